"""Fetching a release dictionary, against a real HTTP server on 127.0.0.1 (never the network)."""

from __future__ import annotations

import hashlib
import io
import json
import random
import socket
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import zstandard

from wwm_prep.text import registry as reg
from wwm_prep.text.fetch import BASE_URL_ENV, FETCH_RECORD, fetch
from wwm_prep.text.registry import DictionaryError, Entry

NAME = "toy-dict"
PAYLOAD = "toy dictionary bytes: 形態素解析\n".encode() * 2000


# ------------------------------------------------------------------------------------------ test server


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        route = self.server.routes.get(self.path)  # type: ignore[attr-defined]
        if route is None:
            self.send_error(404, "Not Found")
            return
        body, declared = route
        self.send_response(200)
        self.send_header("Content-Type", "application/x-xz")
        self.send_header("Content-Length", str(len(body) if declared is None else declared))
        self.end_headers()
        self.wfile.write(body)  # then the connection closes (HTTP/1.0): a larger Content-Length is a cut

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class Server:
    def __init__(self) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.routes = {}  # type: ignore[attr-defined]
        self.httpd.hits = []  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def serve(self, path: str, body: bytes, declared_length: int | None = None) -> str:
        self.httpd.routes[path] = (body, declared_length)  # type: ignore[attr-defined]
        return self.base + path

    @property
    def hits(self) -> list[str]:
        return self.httpd.hits  # type: ignore[attr-defined]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    try:
        yield s
    finally:
        s.stop()


def _dead_url() -> str:
    """A URL on a port nobody listens on: connection refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{NAME}.tar.xz"


# ------------------------------------------------------------------------------------------- archives


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None, **attrs: object) -> None:
    info = tarfile.TarInfo(name)
    for key, value in attrs.items():
        setattr(info, key, value)
    if data is not None:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


def make_archive(extra: list[tuple[str, bytes | None, dict]] = (), inner: bool = True) -> tuple[bytes, bytes]:
    """A release-shaped .tar.xz: `<NAME>/system.dic.zst` (zstd), a licence file, and `extra` members."""
    compressed = zstandard.ZstdCompressor().compress(PAYLOAD)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        _add(tar, f"{NAME}", type=tarfile.DIRTYPE, mode=0o755)
        if inner:
            _add(tar, f"{NAME}/system.dic.zst", compressed)
        _add(tar, f"{NAME}/BSD", b"licence text\n")
        for name, data, attrs in extra:
            _add(tar, name, data, **attrs)
    return buf.getvalue(), compressed


def release_entry(url: str, archive: bytes, inner: bytes, **overrides: object) -> Entry:
    fields = dict(name=NAME, format="vibrato-release", url=url, sha256=sha(archive),
                  inner=f"{NAME}/system.dic.zst", inner_sha256=sha(inner), verified=True)
    fields.update(overrides)
    return Entry(**fields)  # type: ignore[arg-type]


def snapshot(root: Path) -> dict[str, bytes | str] | None:
    """Every path under `root` with its bytes (files) or kind (directories, links)."""
    if not root.exists():
        return None
    out: dict[str, bytes | str] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "link->" + str(p.readlink())
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = p.read_bytes()
    return out


# ------------------------------------------------------------------------------------------ good fetch


def test_fetch_installs_verifies_and_resolves(server: Server, tmp_path: Path) -> None:
    archive, inner = make_archive()
    e = release_entry(server.serve(f"/{NAME}.tar.xz", archive), archive, inner)
    cache = tmp_path / "cache"

    path = fetch(e, cache, progress=False)

    assert path == cache / "dictionaries" / NAME / "system.dic.zst"
    assert reg.resolve(e, cache) == path
    assert zstandard.ZstdDecompressor().decompress(path.read_bytes(), max_output_size=len(PAYLOAD)) == PAYLOAD
    assert (path.parent / "BSD").read_bytes() == b"licence text\n"  # the licence stays with it
    record = json.loads((path.parent / FETCH_RECORD).read_text())
    assert record["archive_sha256"] == sha(archive) and record["inner_sha256"] == sha(inner)
    assert record["verified"] is True and record["url"] == e.url
    assert sorted(p.name for p in (cache / "dictionaries").iterdir()) == [NAME]  # no temporary left
    assert reg.status(e, cache) == f"fetched: {path}"
    assert reg.is_ready(e, cache)

    # Already present and verified: a no-op that does not even contact the server.
    hits = len(server.hits)
    before = snapshot(cache)
    assert fetch(e, cache, progress=False) == path
    assert fetch(e, cache, url=_dead_url(), progress=False) == path
    assert len(server.hits) == hits
    assert snapshot(cache) == before


def test_fetch_by_name_from_a_registry_file(server: Server, tmp_path: Path) -> None:
    archive, inner = make_archive()
    url = server.serve(f"/{NAME}.tar.xz", archive)
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps({"dictionaries": [release_entry(url, archive, inner).to_dict()]}))

    path = fetch(NAME, tmp_path / "cache", progress=True, registry=registry)  # not a TTY: no bar

    assert reg.resolve(NAME, tmp_path / "cache", registry=registry) == path
    assert reg.entry(NAME, registry) == release_entry(url, archive, inner)


def test_base_url_env_var_points_at_a_mirror(server: Server, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    archive, inner = make_archive()
    server.serve(f"/mirror/{NAME}.tar.xz", archive)
    e = release_entry(f"https://example.invalid/releases/download/v0/{NAME}.tar.xz", archive, inner)
    monkeypatch.setenv(BASE_URL_ENV, server.base + "/mirror/")

    path = fetch(e, tmp_path, progress=False)

    assert server.hits == [f"/mirror/{NAME}.tar.xz"]
    assert path.is_file()


def test_bad_existing_copy_is_replaced(server: Server, tmp_path: Path) -> None:
    archive, inner = make_archive()
    e = release_entry(server.serve(f"/{NAME}.tar.xz", archive), archive, inner)
    target = tmp_path / "dictionaries" / NAME
    target.mkdir(parents=True)
    (target / "system.dic.zst").write_bytes(b"corrupt")

    path = fetch(e, tmp_path, progress=False)

    assert path.read_bytes() == inner
    assert sorted(p.name for p in (tmp_path / "dictionaries").iterdir()) == [NAME]


# ------------------------------------------------------------------------------------------- failures

FAILURES = {
    # case: (how the server and entry are set up, words the message must contain)
    "wrong-archive-sha": "archive sha256 mismatch",
    "wrong-inner-sha": "system.dic.zst sha256 mismatch",
    "truncated": "truncated download",
    "dotdot-member": "contains '..'",
    "absolute-member": "absolute path",
    "symlink-member": "is a link",
    "hardlink-member": "is a link",
    "device-member": "device",
    "http-404": "HTTP 404",
    "corrupt-xz": "corrupt archive",
    "corrupt-xz-body": "corrupt archive",
    "missing-inner": "archive has no file",
    "connection-refused": "refused",
}


def _failing_setup(case: str, server: Server) -> tuple[Entry, str]:
    extra: list[tuple[str, bytes | None, dict]] = []
    if case == "dotdot-member":
        extra = [(f"{NAME}/../../evil", b"pwned", {})]
    elif case == "absolute-member":
        extra = [("/tmp/wwm-prep-evil", b"pwned", {})]
    elif case == "symlink-member":
        extra = [(f"{NAME}/link", None, {"type": tarfile.SYMTYPE, "linkname": "/etc/passwd"})]
    elif case == "hardlink-member":
        extra = [(f"{NAME}/hard", None, {"type": tarfile.LNKTYPE, "linkname": "/etc/passwd"})]
    elif case == "device-member":
        extra = [(f"{NAME}/null", None, {"type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3})]
    archive, inner = make_archive(extra, inner=case != "missing-inner")
    path = f"/{NAME}.tar.xz"
    if case == "corrupt-xz":
        archive = archive[:4] + bytes(8) + archive[12:]  # the stream header
    if case == "corrupt-xz-body":
        archive = archive[:-60] + bytes(30) + archive[-30:]  # compressed data / check
    if case == "truncated":
        url = server.serve(path, archive[: len(archive) // 2], declared_length=len(archive))
    elif case == "http-404":
        url = server.base + path
    elif case == "connection-refused":
        url = _dead_url()
    else:
        url = server.serve(path, archive)
    e = release_entry(url, archive, inner)
    if case == "wrong-archive-sha":
        e = release_entry(url, archive, inner, sha256="0" * 64)
    elif case == "wrong-inner-sha":
        e = release_entry(url, archive, inner, inner_sha256="1" * 64)
    return e, url


def _prepare_cache(state: str, cache: Path) -> None:
    if state == "absent":
        return
    other = cache / "dictionaries" / "other"
    other.mkdir(parents=True)
    (other / "system.dic.zst").write_bytes(b"another dictionary")
    (cache / "notes.txt").write_text("user file\n")
    if state == "bad-copy":
        mine = cache / "dictionaries" / NAME
        mine.mkdir()
        (mine / "system.dic.zst").write_bytes(b"an old, damaged copy")
        (mine / "BSD").write_bytes(b"old licence\n")


@pytest.mark.parametrize("state", ["absent", "bad-copy"])
@pytest.mark.parametrize("case", list(FAILURES))
def test_failed_fetch_says_why_and_leaves_cache_untouched(
    case: str, state: str, server: Server, tmp_path: Path
) -> None:
    e, url = _failing_setup(case, server)
    cache = tmp_path / "cache"
    _prepare_cache(state, cache)
    before = snapshot(cache)

    with pytest.raises(DictionaryError) as info:
        fetch(e, cache, progress=False)

    message = str(info.value)
    assert NAME in message and url in message
    assert FAILURES[case].lower() in message.lower(), message
    assert snapshot(cache) == before
    assert not Path("/tmp/wwm-prep-evil").exists()
    assert not (tmp_path / "evil").exists()


def test_unverified_entry_is_refused_unless_allowed(server: Server, tmp_path: Path) -> None:
    archive, inner = make_archive()
    url = server.serve(f"/{NAME}.tar.xz", archive)
    e = release_entry(url, archive, inner, sha256=None, inner_sha256=None, verified=False)
    cache = tmp_path / "cache"

    with pytest.raises(DictionaryError) as info:
        fetch(e, cache, progress=False)
    message = str(info.value)
    assert "refusing" in message and "no checksums" in message and "allow_unverified=True" in message
    assert NAME in message and url in message
    assert server.hits == [] and not cache.exists()
    with pytest.raises(DictionaryError, match="--allow-unverified"):
        reg.resolve(e, cache)

    path = fetch(e, cache, progress=False, allow_unverified=True)
    assert path.read_bytes() == inner
    record = json.loads((path.parent / FETCH_RECORD).read_text())
    assert record["verified"] is False and record["inner_sha256"] == sha(inner)


@pytest.mark.parametrize("damage", ["xz-body", "not-zstd"])
def test_unverified_fetch_still_checks_that_everything_decodes(damage: str, server: Server,
                                                               tmp_path: Path) -> None:
    # With no checksum to compare, a flipped byte deep in the xz stream would otherwise go unnoticed
    # (tarfile stops reading before the xz integrity check).
    noise = random.Random(0).randbytes(400_000)
    inner = zstandard.ZstdCompressor().compress(noise) if damage == "xz-body" else b"not zstd at all"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        _add(tar, f"{NAME}/system.dic.zst", inner)
    archive = buf.getvalue()
    if damage == "xz-body":
        archive = archive[:200_000] + bytes(100) + archive[200_100:]
    e = Entry(name=NAME, format="vibrato-release", url=server.serve(f"/{NAME}.tar.xz", archive))
    cache = tmp_path / "cache"

    with pytest.raises(DictionaryError, match="corrupt archive|not zstd data"):
        fetch(e, cache, progress=False, allow_unverified=True)
    assert not cache.exists()


def test_bundled_unverified_entry_is_refused_without_any_download(tmp_path: Path) -> None:
    with pytest.raises(DictionaryError, match="allow_unverified=True"):
        fetch("ipadic-mecab-2_7_0", tmp_path / "cache", url=_dead_url(), progress=False)
    assert not (tmp_path / "cache").exists()


def test_the_dict_fetch_command_downloads_checks_and_refuses_a_wrong_archive(server: Server, tmp_path: Path) -> None:
    """`wwm-prep dict fetch NAME --url MIRROR`: the real download path, refused by the registry's checksum."""
    from tests.conftest import run

    archive, _ = make_archive()
    url = server.serve("/mirror/recipe.tar.xz", archive)
    code, output = run("dict", "fetch", "bccwj-suw+unidic-cwj-3_1_1", "--url", url, "--cache-dir", str(tmp_path))
    assert code == 2 and "sha256" in output and "Traceback" not in output
    assert server.hits == ["/mirror/recipe.tar.xz"]
    assert snapshot(tmp_path) in (None, {})  # nothing installed
