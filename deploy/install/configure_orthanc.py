#!/usr/bin/python3
"""Set the Orthanc options ghimaging needs in Debian's /etc/orthanc, in place.

Run by deploy/install.sh with the system's python3 (the standard library
only). Orthanc reads every *.json file of its folder and refuses an option
given in two of them, so options are changed where Debian's files hold them
(orthanc.json, worklists.json, credentials.json), keeping their comments;
an option that is only commented out there is added at the top of
orthanc.json. The first run keeps a copy of each file as
<name>.before-ghimaging. Afterwards the folder is read back (comments
stripped) and every option checked.

    configure_orthanc.py --dir /etc/orthanc --http-port 8042 --dicom-port 4242 \
        [--lan] --user ghimaging --password-file F --worklists DIR [--lua FILE | --no-lua] \
        [--stable-age 3]
    configure_orthanc.py --dir /etc/orthanc --remove-lua      (uninstall)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path


def code_mask(text: str) -> list[bool]:
    """True for each character that is JSON (not inside a // or /* */ comment)."""
    mask = [True] * len(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            for k in range(i, j):
                mask[k] = False
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            for k in range(i, j):
                mask[k] = False
            i = j
        else:
            i += 1
    return mask


def strip_comments(text: str) -> str:
    mask = code_mask(text)
    return "".join(c if keep or c == "\n" else " " for c, keep in zip(text, mask, strict=True))


def _value_end(text: str, mask: list[bool], start: int) -> int:
    """Index just past the JSON value starting at ``start``."""
    depth, i, n = 0, start, len(text)
    while i < n:
        c = text[i]
        if not mask[i]:
            i += 1
            continue
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            if depth == 0:
                return i
            continue
        if c in "[{":
            depth += 1
        elif c in "]}":
            if depth == 0:
                return i
            depth -= 1
            if depth == 0:
                return i + 1
        elif c in ",\n" and depth == 0:
            return i
        i += 1
    return n


def set_option(text: str, key: str, value: object, *, insert: bool = True) -> tuple[str, bool]:
    """``text`` with ``key`` set to ``value`` where it is active; if it is
    not, added after the first ``{`` (``insert``). Returns (text, found)."""
    mask = code_mask(text)
    for m in re.finditer(r'"' + re.escape(key) + r'"\s*:\s*', text):
        if not mask[m.start()]:
            continue
        start = m.end()
        end = _value_end(text, mask, start)
        raw = text[start:end]
        trail = raw[len(raw.rstrip()):]
        return text[:start] + json.dumps(value, ensure_ascii=False) + trail + text[end:], True
    if not insert:
        return text, False
    brace = next(i for i, c in enumerate(text) if c == "{" and mask[i])
    line = f'\n  "{key}" : {json.dumps(value, ensure_ascii=False)},  // set by ghimaging (deploy/install.sh)\n'
    return text[:brace + 1] + line + text[brace + 1:], False


def load_folder(folder: Path) -> dict:
    merged: dict = {}
    for path in sorted(folder.glob("*.json")):
        data = json.loads(strip_comments(path.read_text()))
        for k, v in data.items():
            if k in merged:
                raise SystemExit(f"{k} is set in two files of {folder} (Orthanc would refuse to start)")
            merged[k] = v
    return merged


def write(path: Path, text: str, *, mode: int | None = None, group: str | None = None) -> None:
    backup = path.with_name(path.name + ".before-ghimaging")
    if path.exists() and not backup.exists():
        shutil.copy2(path, backup)
    tmp = path.with_name(path.name + ".ghimaging-tmp")
    tmp.write_text(text)
    if path.exists():
        st = path.stat()
        os.chown(tmp, st.st_uid, st.st_gid)
        os.chmod(tmp, st.st_mode & 0o7777)
    if group is not None:
        shutil.chown(tmp, "root", group)
    if mode is not None:
        os.chmod(tmp, mode)
    os.replace(tmp, path)


#: The HttpTimeout earlier installers set (see main).
OLD_HTTP_TIMEOUT = 2


def original_option(path: Path, key: str, default: object) -> object:
    """``key`` as the file had it before ghimaging first changed it."""
    backup = path.with_name(path.name + ".before-ghimaging")
    if backup.is_file():
        return json.loads(strip_comments(backup.read_text())).get(key, default)
    return default


def remove_lua(folder: Path) -> int:
    main_file = folder / "orthanc.json"
    text = main_file.read_text()
    current = json.loads(strip_comments(text))
    lua = [s for s in current.get("LuaScripts", []) if "ghimaging" not in Path(s).name]
    if lua != current.get("LuaScripts", []):
        text, _ = set_option(text, "LuaScripts", lua, insert=False)
        write(main_file, text)
    return 0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/etc/orthanc", type=Path)
    ap.add_argument("--http-port", type=int, required=True)
    ap.add_argument("--dicom-port", type=int, required=True)
    ap.add_argument("--lan", action="store_true", help="HTTP open to other hosts (else loopback only)")
    ap.add_argument("--user", required=True)
    ap.add_argument("--password-file", type=Path, required=True)
    ap.add_argument("--worklists", required=True)
    ap.add_argument("--lua", help="Lua script to load (the push to ghimaging)")
    ap.add_argument("--no-lua", action="store_true", help="remove ghimaging's Lua script")
    ap.add_argument("--stable-age", type=int, default=3)
    ap.add_argument("--remove-lua", action="store_true",
                    help="only take ghimaging's Lua script out of LuaScripts (uninstall)")
    if "--remove-lua" in argv:
        ns = argparse.Namespace(dir=Path(argv[argv.index("--dir") + 1]) if "--dir" in argv else Path("/etc/orthanc"))
        return remove_lua(ns.dir)
    args = ap.parse_args(argv)
    folder: Path = args.dir
    password = args.password_file.read_text().strip()

    main_file = folder / "orthanc.json"
    text = main_file.read_text()
    options: dict[str, object] = {
        "HttpPort": args.http_port,
        "DicomPort": args.dicom_port,
        "RemoteAccessAllowed": bool(args.lan),
        "AuthenticationEnabled": True,
        "DefaultEncoding": "Utf8",
        "DicomAlwaysAllowFindWorklist": True,
        "StableAge": args.stable_age,
    }
    current = json.loads(strip_comments(text))
    if current.get("HttpTimeout") == OLD_HTTP_TIMEOUT:
        # An earlier installer shortened it for a push that waited for the
        # sync; the wake endpoint answers at once, so Debian's value is back.
        options["HttpTimeout"] = original_option(main_file, "HttpTimeout", 60)
    lua = [s for s in current.get("LuaScripts", []) if "ghimaging" not in Path(s).name]
    if args.lua and not args.no_lua:
        lua.append(args.lua)
    options["LuaScripts"] = lua
    for key, value in options.items():
        text, _ = set_option(text, key, value)
    write(main_file, text)

    # Worklists: Debian's worklists.json holds the section.
    wl_file = folder / "worklists.json"
    section = {"Enable": True, "Database": args.worklists}
    if wl_file.exists():
        wl_text, found = set_option(wl_file.read_text(), "Worklists", section, insert=False)
        if not found:
            wl_text = json.dumps({"Worklists": section}, indent=2) + "\n"
    else:
        wl_text = json.dumps({"Worklists": section}, indent=2) + "\n"
    write(wl_file, wl_text)

    # Credentials: root:orthanc 0640, as Debian ships the file.
    cred_file = folder / "credentials.json"
    users = {}
    if cred_file.exists():
        users = json.loads(strip_comments(cred_file.read_text())).get("RegisteredUsers", {}) or {}
    users[args.user] = password
    cred = ("{\n  // Written by ghimaging's deploy/install.sh: Orthanc's HTTP users (Basic\n"
            "  // authentication). Readable by root and the orthanc group only.\n"
            '  "RegisteredUsers" : ' + json.dumps(users, indent=4).replace("\n}", "\n  }") + "\n}\n")
    write(cred_file, cred, mode=0o640, group="orthanc")

    # Read everything back as Orthanc will.
    merged = load_folder(folder)
    want = {**options, "Worklists": section}
    for key, value in want.items():
        if merged.get(key) != value:
            raise SystemExit(f"{key} is {merged.get(key)!r} in {folder}, expected {value!r}")
    if merged.get("RegisteredUsers", {}).get(args.user) != password:
        raise SystemExit(f"the user {args.user} is missing from {cred_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
