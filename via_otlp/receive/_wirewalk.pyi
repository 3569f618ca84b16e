"""Types of the compiled walker (_wirewalk.c): see its header comment."""

from collections.abc import Callable, Sequence

ABI_VERSION: int
MAX_RENDER_DEPTH: int

class Walk:
    def __init__(
        self,
        raw: bytes,
        unique_keys: tuple[bytes, ...],
        hint_key: bytes,
        render: Callable[[bytes], str],
        hint_text: Callable[[bytes], str],
        severity: Callable[[str, int], str],
    ) -> None: ...
    def take(
        self, skip: int, n: int
    ) -> (
        tuple[
            list[str],
            list[str],
            list[int],
            list[bytes] | tuple[bytes, int],
            list[str],
            list[str],
            int,
            int,
        ]
        | None
    ): ...

def xxh64_utf8(strs: Sequence[str], /) -> bytes: ...
