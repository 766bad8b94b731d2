"""Dataset names, tags, references (`name`, `name:3`, `name:tag`) and the file paths inside a
dataset: what is valid, with an InputError naming the field when it is not."""

from __future__ import annotations

import re

from ..errors import InputError, Problem

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
SHA256 = re.compile(r"[0-9a-f]{64}")
NO_SETID = 0o1777  # file modes keep no setuid/setgid bit, whatever a manifest says


def validate_name(name: str, what: str = "dataset name") -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InputError(
            Problem(
                f"invalid {what} {name!r}",
                field=what.replace(" ", "_"),
                hint="letters, digits, '_', '.', '-'; starting with a letter or digit; "
                "at most 128 characters",
            )
        )
    return name


def validate_tag(tag: str) -> str:
    validate_name(tag, "tag")
    if tag.isdigit() or tag == "latest":
        raise InputError(
            Problem(f"invalid tag {tag!r}", field="tag", hint="'latest' and numbers are reserved")
        )
    return tag


def validate_path(path: str) -> str:
    """A relative POSIX path that stays under its root: no '..', no absolute path, no
    control characters, no empty or '.' components."""
    problem = None
    if not isinstance(path, str) or not path:
        problem = "empty file path"
    elif any(ord(c) < 32 or ord(c) == 127 for c in path):
        problem = "control character in file path"
    elif path.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", path):
        problem = "absolute file path"
    elif "\\" in path:
        problem = "backslash in file path"
    else:
        parts = path.split("/")
        if ".." in parts:
            problem = "'..' in file path"
        elif any(p in ("", ".") for p in parts):
            problem = "empty or '.' component in file path"
    if problem:
        raise InputError(Problem(problem, field="path", hint=f"got {path!r}"))
    return path


def parse_ref(ref: str) -> tuple[str, int | str]:
    """'name' → (name, 'latest'); 'name:3' → (name, 3); 'name:tag' → (name, 'tag')."""
    name, sep, sel = ref.partition(":")
    validate_name(name)
    if not sep or sel == "latest":
        return name, "latest"
    if sel.isdigit():
        return name, int(sel)
    return name, validate_tag(sel)
