import socket
import threading

from resnet_core import system


def test_environment_lists_the_cpu_and_bundled_data(lab):
    env = system.environment(check_network=False)
    assert env["devices"][0]["kind"] == "cpu" and env["torch"] and env["torchvision"]
    assert {"mnist-sample", "fashion-sample"} <= set(env["datasets_on_disk"])


def test_network_probe_true_for_a_listening_host_false_offline(monkeypatch):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    threading.Thread(target=lambda: server.accept(), daemon=True).start()
    monkeypatch.setattr(system, "PROBE_HOSTS", (("127.0.0.1", server.getsockname()[1]),))
    assert system.network_reachable()
    server.close()

    def offline(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", offline)
    assert not system.network_reachable()
