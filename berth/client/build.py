"""The client's methods for build, commit and the build cache."""

from berth import fastjson as json

TYPE_CHECKING = False  # the type comments' names; typing is not imported at run time (CLI start-up)
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence  # noqa: F401
    from typing import Any  # noqa: F401

    from berth.client.transport import Response  # noqa: F401


class BuildAPI:
    """Build endpoints, mixed into berth.client.api.APIClient (which provides call())."""

    def image_build(self, chunks, params, headers=None):
        # type: (Iterable[bytes], dict[str, Any], dict[str, str] | None) -> Response
        """POST /build with the context tar (an iterable of byte chunks) as the body; the
        streamed response (iter_json() over it)."""
        from berth.client.transport import urlencode
        query = []
        for k, v in params.items():
            if v is None or v is False:
                continue
            for item in (v if isinstance(v, list) else [v]):
                query.append((k, "1" if item is True else item if isinstance(item, str) else json.dumps(item)))
        return self.call("POST", "/build?" + urlencode(query), body=chunks,
                         headers=dict(headers or {}, **{"Content-Type": "application/x-tar"}), stream=True)

    def build_prune(self, all_=False, filters=None):
        # type: (bool, dict[str, Any] | None) -> dict
        params = {"all": all_ or None}
        if filters:
            params["filters"] = json.dumps(filters)
        return self.call("POST", "/build/prune", params=params)

    def container_commit(self, cid, repo=None, tag=None, changes=(), comment=None, author=None, pause=True):
        # type: (str, str | None, str | None, Sequence[str], str | None, str | None, bool) -> dict
        from berth.client.transport import urlencode
        query = [("container", cid), ("pause", "1" if pause else "0")]
        for k, v in (("repo", repo), ("tag", tag), ("comment", comment), ("author", author)):
            if v:
                query.append((k, v))
        for c in changes:
            query.append(("changes", c))
        return self.call("POST", "/commit?" + urlencode(query), body={})
