"""A least-recently-used store with a byte budget, for vision features and conversation KV caches.

Values are whatever the engine keeps (tensors, caches); the caller states each value's size.
Thread-safe: the inference worker and session housekeeping may both touch it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Generic, TypeVar

V = TypeVar("V")


class ByteBudgetLRU(Generic[V]):
    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._items: OrderedDict[str, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def get(self, key: str) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: str, value: V, nbytes: int) -> bool:
        """Store `value`; evict the least recently used until within budget. False if it can never fit."""
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key)[1]
            if nbytes > self.budget_bytes:
                return False
            self._items[key] = (value, nbytes)
            self._bytes += nbytes
            while self._bytes > self.budget_bytes:
                _, (_, size) = self._items.popitem(last=False)
                self._bytes -= size
                self.evictions += 1
            return True

    def pop(self, key: str) -> V | None:
        with self._lock:
            item = self._items.pop(key, None)
            if item is None:
                return None
            self._bytes -= item[1]
            return item[0]

    @property
    def total_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items


def tensor_bytes(obj: Any) -> int:
    """Bytes held by a tensor, or by the tensors inside a KV cache / nested containers."""
    if hasattr(obj, "element_size") and hasattr(obj, "nelement"):
        return int(obj.element_size() * obj.nelement())
    if isinstance(getattr(obj, "nbytes", None), int):  # numpy arrays, and caches copied out of OpenVINO
        return int(obj.nbytes)
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(o) for o in obj)
    if isinstance(obj, dict):
        return sum(tensor_bytes(o) for o in obj.values())
    layers = getattr(obj, "layers", None)
    if layers is not None:  # transformers Cache: layers with .keys / .values
        return sum(tensor_bytes(getattr(layer, "keys", None)) + tensor_bytes(getattr(layer, "values", None)) for layer in layers)
    return 0


__all__ = ["ByteBudgetLRU", "tensor_bytes"]
