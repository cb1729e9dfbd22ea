"""A Streamlit client that speaks the browser's websocket protocol without rendering anything.

It does what Streamlit's frontend (``frontend/app/src/App.tsx``, ``WidgetStateManager``,
``uploadClient``) does, so a load test measures the server and not a browser:

- connects to ``/_stcore/stream`` with the ``streamlit`` subprotocol and an ``Origin`` header,
- sends ``BackMsg.rerun_script`` (a ``ClientState``: query string, page name or page hash,
  widget states, fragment id), and reads ``ForwardMsg``s until ``script_finished``,
- keeps the elements of the page by delta path, as the frontend's tree does,
- runs ``st.fragment(run_every=...)`` timers from ``auto_rerun`` messages, cleared by a full
  run's ``new_session`` and by ``stop_auto_rerun``, as the frontend does,
- uploads a file the way ``st.file_uploader`` does: ``file_urls_request``, an HTTP PUT of a
  multipart body to the URL the server hands back (with the XSRF cookie as a header), then a
  widget state naming the file; a ``st.camera_input`` shot is uploaded the same way,
- types into a ``st.text_input`` and picks a ``st.radio`` option (both a ``string_value``); a
  form's widgets are sent with its submit button's trigger, as the frontend sends them on submit.

No cached-message hashes are sent, so the server always sends whole messages.
Checked against Streamlit 1.67's server (``streamlit/web/server/starlette``) and its bundled frontend.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
import uuid
from dataclasses import dataclass, field

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.Common_pb2 import FileUploaderState, FileURLs, UploadedFileInfo
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState

FINISHED = {ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_WITH_COMPILE_ERROR}
FRAGMENT_FINISHED = ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY


@dataclass
class Stats:
    full_runs: int = 0  # script runs that finished (the frontend's "done" state)
    early_runs: int = 0  # FINISHED_EARLY_FOR_RERUN: runs the server abandoned for another
    fragment_runs: int = 0
    exceptions: list[str] = field(default_factory=list)  # st.exception boxes the page showed
    disconnected: bool = False  # the server closed the socket while we still used it
    # (seconds since connect, how each run ended) since the last ``press``: why a page never settled
    finishes: list[tuple[float, str]] = field(default_factory=list)


class Client:
    """One browser tab."""

    def __init__(self, base_url: str, query: str = "lang=en") -> None:
        self.base_url, self.query = base_url.rstrip("/"), query
        self.elements: dict[tuple[int, ...], object] = {}  # delta path -> Element proto
        self._written: dict[tuple[int, ...], str] = {}  # delta path -> id of the run that wrote it
        self._run = ("", False)  # (script run id, is a fragment run)
        self._paths_this_run: list[tuple[int, ...]] = []
        self.stats = Stats()
        self.session_id = ""
        self.page_hash = ""
        self.widgets: dict[str, WidgetState] = {}  # what the frontend would resend on every run
        self._ws = None
        self._reader: asyncio.Task | None = None
        self._timers: dict[str, asyncio.Task] = {}
        self._changed = asyncio.Condition()
        self._finished = 0  # full runs finished, for waiters
        self._file_urls: dict[str, asyncio.Future] = {}
        self._closing = False
        self._opened = time.monotonic()

    # ---- connection
    async def connect(self) -> bool:
        """Open the socket; False (and counted as a disconnect) when the server does not accept it."""
        url = "ws" + self.base_url[4:] + "/_stcore/stream"
        try:
            self._ws = await self._open(url)
        except (OSError, TimeoutError, websockets.InvalidHandshake):
            self.stats.disconnected = True
            return False
        self._reader = asyncio.create_task(self._read())
        return True

    def _open(self, url: str):
        return websockets.connect(
            url,
            subprotocols=["streamlit"],
            origin=self.base_url,
            max_size=None,
            open_timeout=60,
            ping_interval=None,  # browsers never ping; the server's pings are answered as they are
        )

    async def close(self) -> None:
        self._closing = True
        for timer in self._timers.values():
            timer.cancel()
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def _read(self) -> None:
        try:
            async for data in self._ws:
                msg = ForwardMsg.FromString(data)
                await self._handle(msg)
        except websockets.ConnectionClosed:
            pass
        finally:
            if not self._closing:
                self.stats.disconnected = True
            async with self._changed:
                self._changed.notify_all()

    async def _handle(self, msg: ForwardMsg) -> None:
        kind = msg.WhichOneof("type")
        if kind == "new_session":
            self.session_id = msg.new_session.initialize.session_id or self.session_id
            self.page_hash = msg.new_session.page_script_hash or self.page_hash
            fragment = bool(msg.metadata.run.fragment_ids)
            self._run, self._paths_this_run = (msg.metadata.run.script_run_id, fragment), []
            if not fragment:  # a full run: the frontend drops its timers
                self._stop_timers(list(self._timers))
        elif kind == "delta":
            path = tuple(msg.metadata.delta_path)
            delta = msg.delta
            self._written[path] = self._run[0]
            self._paths_this_run.append(path)
            if delta.WhichOneof("type") == "new_element":
                self.elements[path] = delta.new_element
                if delta.new_element.WhichOneof("type") == "exception":
                    e = delta.new_element.exception
                    self.stats.exceptions.append(f"{e.type}: {e.message}")
            elif delta.WhichOneof("type") == "add_block":  # a container now stands where an element was
                self.elements.pop(path, None)
        elif kind == "navigation":  # the page the server resolved: later reruns name it by hash
            self.page_hash = msg.navigation.page_script_hash or self.page_hash
        elif kind == "auto_rerun":
            self._start_timer(msg.auto_rerun.fragment_id, msg.auto_rerun.interval)
        elif kind == "stop_auto_rerun":
            self._stop_timers(list(msg.stop_auto_rerun.fragment_ids))
        elif kind == "file_urls_response":
            future = self._file_urls.pop(msg.file_urls_response.response_id, None)
            if future is not None and not future.done():
                future.set_result(msg.file_urls_response)
        elif kind == "script_finished":
            status = msg.script_finished
            self.stats.finishes.append(
                (round(time.monotonic() - self._opened, 2), ForwardMsg.ScriptFinishedStatus.Name(status))
            )
            if status in FINISHED or status == FRAGMENT_FINISHED:
                self._drop_stale(status == FRAGMENT_FINISHED)
            if status in FINISHED:
                self.stats.full_runs += 1
                self._finished += 1
            elif status == FRAGMENT_FINISHED:
                self.stats.fragment_runs += 1
            else:
                self.stats.early_runs += 1
            async with self._changed:
                self._changed.notify_all()

    def _drop_stale(self, fragment: bool) -> None:
        """What the frontend's clearStaleNodes does: drop what this run did not write again.

        A fragment run only owns its containers: the roots of the paths it wrote (each fragment
        writes its container block first, then what is inside). One run may carry several
        fragments whose timers fell due together, hence roots, not one common prefix (which
        would be the whole page, and would drop the form beside two fragments).
        """
        roots: list[tuple[int, ...]] = [()]
        if fragment:
            written = set(self._paths_this_run)
            if not written:
                return
            roots = [p for p in written if not any(p[:k] in written for k in range(1, len(p)))]
        stale = [p for p in self._written if self._written[p] != self._run[0]]
        for path in [p for p in stale if any(p[: len(r)] == r for r in roots)]:
            del self._written[path]
            self.elements.pop(path, None)

    def _start_timer(self, fragment_id: str, interval: float) -> None:
        self._stop_timers([fragment_id])

        async def tick() -> None:
            while True:
                await asyncio.sleep(interval)
                await self._send_rerun(fragment_id=fragment_id, auto=True)

        self._timers[fragment_id] = asyncio.create_task(tick())

    def _stop_timers(self, fragment_ids: list[str]) -> None:
        for fid in fragment_ids:
            timer = self._timers.pop(fid, None)
            if timer is not None:
                timer.cancel()

    # ---- what a user does
    async def _send_rerun(self, page_name: str = "", fragment_id: str = "", auto: bool = False, **extra) -> None:
        msg = BackMsg()
        state = msg.rerun_script
        state.query_string = self.query
        state.page_script_hash = self.page_hash
        state.page_name = "" if self.page_hash else page_name
        state.fragment_id = fragment_id
        state.is_auto_rerun = auto
        if self._ws is None:  # never connected
            return
        state.widget_states.widgets.extend(self.widgets.values())
        for value in extra.get("triggers", []):
            state.widget_states.widgets.append(value)
        try:
            await self._ws.send(msg.SerializeToString())
        except websockets.ConnectionClosed:
            if not self._closing:
                self.stats.disconnected = True

    async def _until(self, ready, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        async with self._changed:
            while not ready():
                if self.stats.disconnected:
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                try:
                    await asyncio.wait_for(self._changed.wait(), left)
                except TimeoutError:
                    return False
        return True

    async def run(self, page_name: str = "", triggers=(), timeout: float = 120) -> float:
        """A full run of the page (a visit, a widget change); seconds until it finished, or -1."""
        start, before = time.perf_counter(), self._finished
        if page_name:
            self.page_hash = ""  # a deep link names the page by its URL, as a new tab does
        await self._send_rerun(page_name=page_name, triggers=list(triggers))
        ok = await self._until(lambda: self._finished > before, timeout)
        return time.perf_counter() - start if ok else -1.0

    async def wait_for(self, predicate, timeout: float) -> float:
        """Seconds until ``predicate(self)`` holds after some run finished (full or fragment), or -1."""
        start = time.perf_counter()
        ok = await self._until(lambda: predicate(self), timeout)
        return time.perf_counter() - start if ok else -1.0

    async def click(self, label: str, timeout: float = 120) -> float:
        """Press the button labelled ``label`` (a form's submit button sends the trigger too); seconds
        until the run it starts has finished, or -1."""
        return await self.run(triggers=[self._trigger(label)], timeout=timeout)

    async def press(self, label: str) -> None:
        """Press the button labelled ``label`` and return at once, as a user who watches the page
        rather than waiting for the server to finish its run (see :meth:`wait_for`)."""
        self.stats.finishes.clear()
        await self._send_rerun(triggers=[self._trigger(label)])

    def fill(self, label: str, text: str) -> None:
        """Type ``text`` into the text input labelled ``label``, with no run: inside a form the value
        goes with the submit button's trigger (``click``), as the frontend sends a form's widgets."""
        box = self.find("text_input", lambda w: w.label == label)
        if box is None:
            raise LookupError(f"no text input {label!r} on the page")
        self.widgets[box.id] = WidgetState(id=box.id, string_value=text)

    async def choose(self, label: str, option: str, timeout: float = 120) -> float:
        """Pick ``option`` of the radio labelled ``label`` (its value is the option's text); seconds
        until the run it starts has finished, or -1."""
        radio = self.find("radio", lambda w: w.label == label)
        if radio is None or option not in radio.options:
            raise LookupError(f"no radio {label!r} with the option {option!r} on the page")
        self.widgets[radio.id] = WidgetState(id=radio.id, string_value=option)
        return await self.run(timeout=timeout)

    def _trigger(self, label: str) -> WidgetState:
        button = self.find("button", lambda b: b.label == label)
        if button is None:
            raise LookupError(f"no button {label!r} on the page")
        return WidgetState(id=button.id, trigger_value=True)

    async def upload(self, name: str, data: bytes, mime: str, timeout: float = 120, widget=None) -> float:
        """Drop a file on ``widget`` (a file uploader or a camera input found on the page: a camera's
        shot is uploaded as a file is), the page's first file uploader by default; seconds until the
        page has answered, or -1."""
        widget = widget or self.find("file_uploader")
        if widget is None or self._ws is None:
            raise LookupError("no file uploader on the page")
        start = time.perf_counter()
        request_id = str(uuid.uuid4())
        future = asyncio.get_running_loop().create_future()
        self._file_urls[request_id] = future
        msg = BackMsg()
        msg.file_urls_request.request_id = request_id
        msg.file_urls_request.file_names.append(name)
        msg.file_urls_request.session_id = self.session_id
        await self._ws.send(msg.SerializeToString())
        urls = (await asyncio.wait_for(future, timeout)).file_urls[0]
        await asyncio.to_thread(self._put, urls.upload_url, name, data, mime)
        info = UploadedFileInfo(
            name=name,
            size=len(data),
            file_id=urls.file_id,
            file_urls=FileURLs(file_id=urls.file_id, upload_url=urls.upload_url, delete_url=urls.delete_url),
        )
        self.widgets[widget.id] = WidgetState(
            id=widget.id, file_uploader_state_value=FileUploaderState(uploaded_file_info=[info])
        )
        left = timeout - (time.perf_counter() - start)
        seconds = await self.run(timeout=left)
        return time.perf_counter() - start if seconds >= 0 else -1.0

    def _put(self, upload_url: str, name: str, data: bytes, mime: str) -> None:
        """The multipart PUT of the frontend's upload client, with its XSRF header."""
        with urllib.request.urlopen(f"{self.base_url}/_stcore/health", timeout=30) as health:
            cookies = [c.split(";")[0] for c in health.headers.get_all("Set-Cookie") or []]
        xsrf = next((c.split("=", 1)[1] for c in cookies if c.startswith("_streamlit_xsrf=")), "")
        boundary = uuid.uuid4().hex
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
                f"Content-Type: {mime}\r\n\r\n"
            ).encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        url = upload_url if upload_url.startswith("http") else f"{self.base_url}{upload_url}"
        request = urllib.request.Request(url, data=body, method="PUT")
        request.add_header("Content-Type", f"multipart/form-data; boundary={boundary}")
        if xsrf:
            request.add_header("X-Xsrftoken", xsrf)
            request.add_header("Cookie", f"_streamlit_xsrf={xsrf}")
        with urllib.request.urlopen(request, timeout=60) as response:
            if response.status not in (200, 204):
                raise OSError(f"upload answered HTTP {response.status}")

    # ---- what the page shows
    def find_all(self, kind: str, where=lambda e: True) -> list:
        found = []
        for path in sorted(self.elements):
            element = self.elements[path]
            if element.WhichOneof("type") == kind and where(getattr(element, kind)):
                found.append(getattr(element, kind))
        return found

    def find(self, kind: str, where=lambda e: True):
        found = self.find_all(kind, where)
        return found[0] if found else None

    def texts(self, kind: str) -> list[str]:
        """Bodies of markdown-like elements (headings are markdown in Streamlit's protocol)."""
        out = []
        for e in self.find_all(kind):
            out.append(getattr(e, "body", "") or getattr(e, "label", ""))
        return out
