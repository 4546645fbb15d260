"""An image's `User` ("uid", "name", "uid:gid", "name:group") as numbers, looked up in the
image's own /etc/passwd and /etc/group, as a container runtime does (pure)."""

from __future__ import annotations

from teeroute_sandbox.runner.errors import ConfigError


def _table(text: str) -> list[list[str]]:
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def _passwd_entry(user: str, passwd: str) -> list[str] | None:
    for entry in _table(passwd):
        if len(entry) >= 4 and (entry[0] == user or (user.isdigit() and entry[2] == user)):
            return entry
    return None


def user_ids(spec: str, passwd: str, group: str) -> tuple[int, int]:
    """(uid, gid) for an image's User; an empty User is root. Without a group part the gid
    is the user's primary group in /etc/passwd, else 0."""
    user, _, group_part = (spec or "0").partition(":")
    entry = _passwd_entry(user, passwd)
    if user.isdigit():
        uid = int(user)
    elif entry is not None:
        uid = int(entry[2])
    else:
        raise ConfigError(f"image user {user!r} is not in the image's /etc/passwd")
    if not group_part:
        return uid, int(entry[3]) if entry is not None and entry[3].isdigit() else 0
    if group_part.isdigit():
        return uid, int(group_part)
    for row in _table(group):
        if len(row) >= 3 and row[0] == group_part and row[2].isdigit():
            return uid, int(row[2])
    raise ConfigError(f"image group {group_part!r} is not in the image's /etc/group")
