"""Downloads go through torchvision's and torch.hub's own code and report their bytes as they arrive.

A loopback HTTP server stands in for the internet: the download code under test is the real one.
"""
from __future__ import annotations

import functools
import io
import threading
import urllib.error
import urllib.request
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from PIL import Image

from tlcore import downloads
from tlcore.data import load_dataset
from tlcore.errors import DownloadRequired
from tlcore.models import MODELS, build_network, download_weights, weights_status
from tlcore.train.events import Phase, RunEnded
from tlcore.train.loop import train
from tlcore.train.plan import Plan


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(tmp_path):
    """Serves tmp_path/www on 127.0.0.1; yields (folder, base URL)."""
    www = tmp_path / "www"
    www.mkdir()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(www)))
    srv.handle_error = lambda *a: None   # torchvision's redirect probe hangs up early; that is fine
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield www, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


@pytest.fixture
def hub_dir(tmp_path):
    """torch.hub's cache in tmp_path for one test, and the real one back afterwards."""
    saved = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(saved)


def _png(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 20), color).save(buf, format="PNG")
    return buf.getvalue()


def _offline(monkeypatch) -> None:
    def refuse(*a, **k):
        raise urllib.error.URLError("offline")
    monkeypatch.setattr("urllib.request.urlopen", refuse)


def test_ants_bees_downloads_through_torchvision_reports_its_bytes_and_then_works_offline(server, tmp_path,
                                                                                          monkeypatch):
    www, base = server
    with zipfile.ZipFile(www / "hymenoptera_data.zip", "w") as zf:
        for split, n in (("train", 6), ("val", 3)):
            for cls, color in (("ants", (150, 60, 20)), ("bees", (230, 200, 40))):
                for i in range(n):
                    zf.writestr(f"hymenoptera_data/{split}/{cls}/{i}.png", _png(color))
    size = (www / "hymenoptera_data.zip").stat().st_size
    monkeypatch.setattr("tlcore.data.sources.ANTS_BEES_URL", f"{base}/hymenoptera_data.zip")
    seen: list[tuple[int, int | None]] = []
    with downloads.reporting(lambda done, total: seen.append((done, total))):
        data = load_dataset("ants_bees", root=tmp_path / "data", image_size=32)
    assert seen and seen[-1] == (size, size)
    assert data.classes == ("ants", "bees") and len(data.train_y) == 12 and len(data.val_y) == 6

    _offline(monkeypatch)   # a second process, say: the extracted copy is enough
    again = load_dataset("ants_bees", root=tmp_path / "data", image_size=32, seed=1)
    assert torch.equal(torch.bincount(again.train_y), torch.tensor([6, 6]))


def test_a_run_that_needs_weights_downloads_them_with_progress_events(server, hub_dir, monkeypatch):
    www, base = server
    spec = MODELS["resnet18"]
    name = spec.weights.url.rsplit("/", 1)[1]
    torch.manual_seed(3)
    torch.save(spec.build().state_dict(), www / name)
    real_urlopen = urllib.request.urlopen
    # torch.hub's own download code runs; only the host it reaches is ours.
    monkeypatch.setattr(torch.hub, "urlopen", lambda req, *a, **k: real_urlopen(
        urllib.request.Request(f"{base}/{name}", headers=dict(req.header_items())), *a, **k))
    assert weights_status("resnet18") == "needs download"
    events: list = []
    train(Plan(model="resnet18", image_size=32, epochs=1, per_class=5), events.append)
    assert [e.status for e in events if isinstance(e, RunEnded)] == ["finished"]
    got = [e for e in events if isinstance(e, Phase) and e.name == "download"]
    assert got and got[-1].done == got[-1].total == (www / name).stat().st_size
    assert weights_status("resnet18") == "cached"

    seen: list = []
    with downloads.reporting(lambda done, total: seen.append(done)):
        download_weights("resnet18")      # already here: nothing to fetch
    assert seen == []
    _offline(monkeypatch)
    monkeypatch.setattr(torch.hub, "urlopen", urllib.request.urlopen)
    net = build_network("resnet18", 4)
    assert torch.equal(net.groups["stem"][0].weight, torch.load(www / name)["conv1.weight"])


def test_download_weights_offline_names_the_file(hub_dir, monkeypatch):
    _offline(monkeypatch)
    with pytest.raises(DownloadRequired, match="mobilenet_v2-"):
        download_weights("mobilenet_v2")


def test_progress_goes_only_to_the_thread_that_asked(server):
    www, base = server
    (www / "blob.bin").write_bytes(bytes(300_000))
    mine: list = []

    def download(dest: Path) -> None:
        torch.hub.download_url_to_file(f"{base}/blob.bin", str(dest), progress=False)

    with downloads.reporting(lambda done, total: mine.append(done)):
        t = threading.Thread(target=download, args=(www.parent / "theirs.bin",))   # not inside their block
        t.start()
        t.join()
        assert mine == []
        download(www.parent / "mine.bin")
    assert mine[-1] == 300_000


def test_prefetch_downloads_weights_with_progress_and_reports_each_name(server, hub_dir, monkeypatch, capsys):
    from tlcore.__main__ import main

    www, base = server
    spec = MODELS["resnet18"]
    name = spec.weights.url.rsplit("/", 1)[1]
    torch.manual_seed(4)
    torch.save(spec.build().state_dict(), www / name)
    real_urlopen = urllib.request.urlopen
    monkeypatch.setattr(torch.hub, "urlopen", lambda req, *a, **k: real_urlopen(
        urllib.request.Request(f"{base}/{name}", headers=dict(req.header_items())), *a, **k))
    assert main(["prefetch", "resnet18", "digits", "efficientnet_lite0"]) == 0
    out, err = capsys.readouterr()
    assert "MB" in err                                       # the progress bar
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "downloaded" in rows["resnet18"] and "bundled" in rows["digits"] and "bundled" in rows["efficientnet_lite0"]
    assert weights_status("resnet18") == "cached"
    assert main(["prefetch", "resnet18"]) == 0 and "already here" in capsys.readouterr().out


def test_prefetch_names_what_it_does_not_know_and_what_it_could_not_fetch(hub_dir, monkeypatch, capsys):
    from tlcore.__main__ import main

    assert main(["prefetch", "resnet18x"]) == 2
    assert "resnet18x: not a dataset or a model" in capsys.readouterr().err
    _offline(monkeypatch)
    assert main(["prefetch", "mobilenet_v2"]) == 1
    assert "failed" in capsys.readouterr().out
