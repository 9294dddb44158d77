"""The route table of the `params` scenario, shared by every app (fulmen and peers).

200 routes in a fixed order; the one the benchmark requests,
/users/{id:int}/posts/{slug}, is number 100 of 200 (the middle), so a router
that tries routes in order does about half the table per request. The other
199 use the same shapes a real API has (static, one and two parameters, some
under the same /users/{id:int}/ prefix as the target).

Patterns are written in fulmen/Japronto syntax; to_regex() and to_colon()
translate them for the peers.
"""
import re

TARGET = "/users/{id:int}/posts/{slug}"
TARGET_INDEX = 100
NROUTES = 200

# what the benchmark sends, and what every server must answer
REQUEST_PATH = "/users/42/posts/hello-world?page=3"
REQUEST_HEADER = ("X-Token", "abc")
EXPECTED_BODY = b"user=42 slug=hello-world page=3 token=abc"
OTHER_BODY = "other"


def patterns():
    """The 200 patterns, in registration order."""
    out = []
    for i in range(NROUTES):
        if i == TARGET_INDEX:
            out.append(TARGET)
            continue
        shape = i % 5
        if shape == 0:
            out.append("/api/r%d" % i)
        elif shape == 1:
            out.append("/api/r%d/{id:int}" % i)
        elif shape == 2:
            out.append("/api/r%d/{id:int}/edit" % i)
        elif shape == 3:
            out.append("/api/r%d/items/{name}" % i)
        else:
            out.append("/users/{id:int}/r%d/{slug}" % i)
    return out


_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?\}")


def to_regex(pattern):
    """'/users/{id:int}/x' -> compiled regex with named groups, anchored."""
    def repl(m):
        kind = m.group(2) or "str"
        body = "[0-9]+" if kind == "int" else "[^/]+"
        return "(?P<%s>%s)" % (m.group(1), body)
    out, pos = [], 0
    for m in _PARAM.finditer(pattern):
        out.append(re.escape(pattern[pos:m.start()]))
        out.append(repl(m))
        pos = m.end()
    out.append(re.escape(pattern[pos:]))
    return re.compile("^" + "".join(out) + "$")


def to_colon(pattern):
    """'/users/{id:int}/x' -> '/users/:id/x' (uWebSockets / socketify syntax)."""
    return _PARAM.sub(lambda m: ":" + m.group(1), pattern)


def is_static(pattern):
    return "{" not in pattern


def split_query(qs):
    """The tiny inline query parser the apps use when the framework has none."""
    out = {}
    if qs:
        for part in qs.split("&"):
            k, _, v = part.partition("=")
            out[k] = v
    return out


def answer(user, slug, page, token):
    return "user=%s slug=%s page=%s token=%s" % (user, slug, page, token)
