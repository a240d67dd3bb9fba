"""Who may read which uploaded images: a small registry over the uploads folder.

A learner's zips and webcam shots are private to the session that made them. A link never carries a
path: it carries a *reference*. Your own upload's reference ("zip-<digest>", "cam") means something
only to you; a *share token* ("share-<random>") is made on purpose by `share` and lets anyone with
the link read a read-only copy that names no one.

    uploads/private/<hash of owner>/<digest>.zip     your zips (content-addressed)
    uploads/private/<hash of owner>/webcam/<class>/   your webcam shots
    uploads/private/<hash of owner>/index.json        file names, the webcam set's name, your shares
    uploads/shared/<token>/<file>.zip or webcam/      shared copies, with meta.json (the name only)

Owner folders are named by a hash, so no path (in a run's plan, in a log) reveals an owner's id.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import DatasetError
from .paths import cache_dir

WEBCAM = "cam"
_ZIP = re.compile(r"zip-([0-9a-f]{16})")
_SHARE = re.compile(r"share-([A-Za-z0-9_-]{20,64})")
MAX_NAME = 120


class UploadNotFound(DatasetError):
    """A reference that is not one of this session's uploads nor a dataset shared with it."""


@dataclass(frozen=True)
class Upload:
    reference: str      # what a link may carry
    path: Path          # what the engine reads (server side only)
    name: str           # what people call it: the uploaded file's name, or the webcam set's name
    shared: bool        # a read-only shared copy, not the session's own


def root_dir(root: Path | None = None) -> Path:
    return Path(root) if root is not None else cache_dir() / "uploads"


def _owner_dir(owner: str, root: Path | None) -> Path:
    if not owner:
        raise UploadNotFound("uploads need a session id")
    digest = hashlib.sha256(f"tlcore-uploads:{owner}".encode()).hexdigest()[:24]
    return root_dir(root) / "private" / digest


def _shared_dir(root: Path | None) -> Path:
    return root_dir(root) / "shared"


def display_name(file_name: str) -> str:
    """The upload's own file name, without folders or control characters, short enough for a title."""
    base = re.split(r"[\\/]", file_name or "")[-1]
    base = re.sub(r"[\x00-\x1f\x7f]", "", base).strip()
    return base[:MAX_NAME] or "upload.zip"


def _safe_file_name(file_name: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._ ()-]", "_", display_name(file_name)).strip(". ") or "upload"
    return (name[:80] if name.lower().endswith(".zip") else name[:76] + ".zip")


def _index(owner: str, root: Path | None) -> dict:
    f = _owner_dir(owner, root) / "index.json"
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError):
        return {}


def _write_json(file: Path, data: dict) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(f".{secrets.token_hex(4)}.tmp")
    tmp.write_text(json.dumps(data, sort_keys=True))
    os.replace(tmp, file)   # readers never see half a file


def _update_index(owner: str, root: Path | None, change: Callable[[dict], None]) -> None:
    index = _index(owner, root)
    change(index)
    _write_json(_owner_dir(owner, root) / "index.json", index)


# --- your own uploads -------------------------------------------------------------------------------
def save(owner: str, file_name: str, data: bytes, *, check: Callable[[Path], object] | None = None,
         root: Path | None = None) -> str:
    """Keep an uploaded zip for `owner` and return its reference. `check(path)` vets it first (it
    raises DatasetError for a bad archive); the file it sees carries the upload's own name, so the
    engine's messages name what the learner uploaded. A rejected upload leaves nothing behind."""
    folder = _owner_dir(owner, root)
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(data).hexdigest()[:16]
    final = folder / f"{digest}.zip"
    if not final.exists():
        with tempfile.TemporaryDirectory(dir=folder, prefix=".incoming-") as tmp:
            staged = Path(tmp) / _safe_file_name(file_name)
            staged.write_bytes(data)
            if check is not None:
                check(staged)
            os.replace(staged, final)
    name = display_name(file_name)
    _update_index(owner, root, lambda ix: ix.setdefault("zips", {}).__setitem__(digest, name))
    return f"zip-{digest}"


def webcam_dir(owner: str, root: Path | None = None) -> Path:
    return _owner_dir(owner, root) / "webcam"


def save_shot(owner: str, class_name: str, jpeg: bytes, root: Path | None = None) -> int:
    """Add one webcam photo to a class; returns the class's shot count. The photo goes through the
    checked decoder first (BadImage, one line, for anything that is not an image it reads)."""
    from .data.images import check_photo
    check_photo(jpeg, "the webcam photo")
    safe = re.sub(r"[^A-Za-z0-9 _-]", "_", class_name).strip()[:60] or "class"
    folder = webcam_dir(owner, root) / safe
    folder.mkdir(parents=True, exist_ok=True)
    n = len(list(folder.glob("*.jpg")))
    (folder / f"shot_{n:04d}.jpg").write_bytes(jpeg)
    return n + 1


def webcam_counts(owner: str, root: Path | None = None) -> dict[str, int]:
    folder = webcam_dir(owner, root)
    if not folder.is_dir():
        return {}
    return {d.name: len(list(d.glob("*.jpg"))) for d in sorted(folder.iterdir()) if d.is_dir()}


def name_webcam_set(owner: str, name: str, root: Path | None = None) -> str:
    """Remember what the learner calls their webcam shots; returns the name as it will be shown."""
    clean = display_name(name) if name.strip() else "webcam shots"
    _update_index(owner, root, lambda ix: ix.__setitem__("webcam", clean))
    return clean


def mine(owner: str, root: Path | None = None) -> list[Upload]:
    """This session's own datasets, newest zip first, then the webcam set if it has shots."""
    index, folder = _index(owner, root), _owner_dir(owner, root)
    zips = sorted(((d, n) for d, n in index.get("zips", {}).items() if (folder / f"{d}.zip").exists()),
                  key=lambda dn: -(folder / f"{dn[0]}.zip").stat().st_mtime)
    out = [Upload(f"zip-{d}", folder / f"{d}.zip", n, False) for d, n in zips]
    if webcam_counts(owner, root):
        out.append(Upload(WEBCAM, webcam_dir(owner, root), index.get("webcam", "webcam shots"), False))
    return out


# --- references and shares ----------------------------------------------------------------------------
def resolve(reference: str, owner: str, root: Path | None = None) -> Upload:
    """The dataset a link's reference names, if this session may read it; UploadNotFound if not."""
    reference = (reference or "").strip()
    if m := _SHARE.fullmatch(reference):
        folder = _shared_dir(root) / m.group(1)
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except (OSError, ValueError):
            raise UploadNotFound("this link's shared dataset does not exist (any more) on this server") from None
        return Upload(reference, folder / meta["file"], meta.get("name", "shared images"), True)
    if m := _ZIP.fullmatch(reference):
        path = _owner_dir(owner, root) / f"{m.group(1)}.zip"
        if path.is_file():
            name = _index(owner, root).get("zips", {}).get(m.group(1), "upload.zip")
            return Upload(reference, path, name, False)
    elif reference == WEBCAM and webcam_counts(owner, root):
        return Upload(reference, webcam_dir(owner, root), _index(owner, root).get("webcam", "webcam shots"), False)
    raise UploadNotFound("this link's dataset is not one of your uploads: uploads are private to the browser "
                         "that made them (ask its owner for a share link from the Share box)")


def reference_of(path: str | Path, owner: str, root: Path | None = None) -> str | None:
    """The reference of a dataset path this session may read (its own, or shared), else None."""
    if not path:
        return None
    try:
        p = Path(path).resolve()
        shared, own = _shared_dir(root).resolve(), _owner_dir(owner, root).resolve()
    except (OSError, ValueError):
        return None
    if p.is_relative_to(shared) and p != shared:
        return f"share-{p.relative_to(shared).parts[0]}"
    if p.parent == own and _ZIP.fullmatch(f"zip-{p.stem}") and p.suffix == ".zip":
        return f"zip-{p.stem}"
    if p == webcam_dir(owner, root).resolve():
        return WEBCAM
    return None


def readable(path: str | Path, owner: str, root: Path | None = None) -> bool:
    """True when `owner` may read the dataset at `path`: its own upload or a shared one."""
    ref = reference_of(path, owner, root)
    if ref is None:
        return False
    try:
        return resolve(ref, owner, root).path.resolve() == Path(path).resolve()
    except (UploadNotFound, OSError):
        return False


def share(reference: str, owner: str, root: Path | None = None) -> str:
    """A share token for one of `owner`'s datasets: a frozen, read-only copy under a random name.

    Asking again for the same zip gives the same token; a webcam set is copied as it is now (shots
    taken later are not shared until it is shared again). A shared token passes through unchanged."""
    upload = resolve(reference, owner, root)
    if upload.shared:
        return upload.reference
    index = _index(owner, root)
    known = index.get("shares", {}).get(reference)
    if known and reference != WEBCAM and (_shared_dir(root) / known / "meta.json").exists():
        return f"share-{known}"
    token = secrets.token_urlsafe(18)
    folder = _shared_dir(root) / token
    folder.mkdir(parents=True)
    if upload.path.is_dir():
        shutil.copytree(upload.path, folder / "webcam")
        target = "webcam"
    else:
        target = _safe_file_name(upload.name)
        try:
            os.link(upload.path, folder / target)   # same bytes, no copy; the owner's file is never rewritten
        except OSError:
            shutil.copyfile(upload.path, folder / target)
    _write_json(folder / "meta.json", {"file": target, "name": upload.name})
    _update_index(owner, root, lambda ix: ix.setdefault("shares", {}).__setitem__(reference, token))
    return f"share-{token}"


# --- taking it back ----------------------------------------------------------------------------------------
def shares(owner: str, root: Path | None = None) -> dict[str, str]:
    """This owner's live share links: their dataset's reference -> the token a link carries ("share-...")."""
    live = {ref: tok for ref, tok in _index(owner, root).get("shares", {}).items()
            if (_shared_dir(root) / tok / "meta.json").exists()}
    return {ref: f"share-{tok}" for ref, tok in live.items()}


def revoke(reference: str, owner: str, root: Path | None = None) -> bool:
    """Withdraw the share link of one of `owner`'s datasets: the shared copy and its cached images and
    features go, so the token opens nothing any more. False when it had no share. Only the owner can:
    the token is looked up in the owner's own index, never taken from the caller."""
    token = _index(owner, root).get("shares", {}).get(reference)
    if not token:
        return False
    folder = _shared_dir(root) / token
    if folder.is_dir():
        try:
            target = folder / json.loads((folder / "meta.json").read_text())["file"]
        except (OSError, ValueError, KeyError):
            target = None
        if target is not None:
            forget_caches(target)
        (folder / "meta.json").unlink(missing_ok=True)   # first: from here on resolve() finds nothing
        shutil.rmtree(folder, ignore_errors=True)
    _update_index(owner, root, lambda ix: ix.get("shares", {}).pop(reference, None))
    return True


def delete(reference: str, owner: str, root: Path | None = None) -> None:
    """Delete one of `owner`'s datasets (a zip, or the webcam set): its file, its share link, and the
    decoded images and frozen features the cache kept of it. Runs trained on it keep their results;
    their images can no longer be shown. UploadNotFound when it is not this owner's."""
    upload = resolve(reference, owner, root)
    if upload.shared:
        raise UploadNotFound("a shared dataset belongs to whoever shared it: only they can delete it")
    revoke(reference, owner, root)
    forget_caches(upload.path)
    if upload.path.is_dir():
        shutil.rmtree(upload.path, ignore_errors=True)
    else:
        upload.path.unlink(missing_ok=True)

    def drop(ix: dict) -> None:
        if reference == WEBCAM:
            ix.pop("webcam", None)
        elif m := _ZIP.fullmatch(reference):
            ix.get("zips", {}).pop(m.group(1), None)
    _update_index(owner, root, drop)


def forget_caches(path: Path) -> int:
    """Delete what the cache folder made from the dataset at `path` (its decoded copy at every size, its
    frozen features at every cut): their names start with its source tag. Returns how many files went.
    A server process may still hold a copy in memory until it is evicted; nothing reads it from disk."""
    from .data.registry import source_tag
    tag = source_tag(path)
    gone = 0
    for folder, pattern in (("datasets", f"*-{tag}-*.pt"), ("features", f"{tag}-*.pt")):
        for f in (cache_dir() / folder).glob(pattern):
            f.unlink(missing_ok=True)
            gone += 1
    return gone
