"""The layout of pickled state, read from the classes themselves.

A checkpoint pickles the :class:`~streamfuse.engine.Engine` and everything it holds: ~15 of
our classes and river's models. Pickle stores an object's attribute values, not its class, so
a checkpoint written before a class gained, lost or reordered an attribute unpickles into
objects the code cannot run (a missing attribute is found only when first used, mid-stream).

:func:`code_layout` names every class of the package with the attributes it defines (and
river's version, whose models a checkpoint holds); a checkpoint stores it beside the state.
On restore, :func:`layout_changes` walks the state (:func:`state_layout`: every class its
pickle holds instances of) and compares those classes, as the running code defines them, with
what the checkpoint recorded, before the state is used. Nothing is bumped by hand: editing a
class is what changes the layout.

A class's attributes are, in this order of preference: its dataclass fields (in order:
slotted dataclasses pickle their values by position), its ``__slots__``, or the names its
methods assign on ``self`` (read from the source of every method in its MRO). Classes without
Python source (NumPy arrays, ``collections.deque``) are recorded by name only: their pickles
are versioned by their own libraries.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import pickle
import sys
import textwrap
import types
from collections.abc import Iterable, Mapping
from typing import Any

Layout = dict[str, tuple[str, ...]]

#: the package whose classes are compared attribute by attribute
OURS = "streamfuse"
#: third-party packages whose objects a checkpoint holds (river's models), compared by version:
#: their classes' attributes change only with it
VERSIONED = ("river",)
#: objects pickled by reference (a name, no state): their classes hold no layout
_BY_REFERENCE = (type, types.FunctionType, types.BuiltinFunctionType, types.ModuleType)


def class_name(cls: type) -> str:
    """``module.qualname`` of ``cls``, as pickle finds it."""
    return f"{cls.__module__}.{cls.__qualname__}"


@functools.cache
def class_fields(cls: type) -> tuple[str, ...]:
    """The attributes instances of ``cls`` carry (see the module's notes)."""
    if dataclasses.is_dataclass(cls):
        return tuple(f.name for f in dataclasses.fields(cls))
    slots = [
        name
        for klass in reversed(cls.__mro__)
        for name in _as_tuple(klass.__dict__.get("__slots__", ()))
        if name not in ("__dict__", "__weakref__")
    ]
    if slots:
        return tuple(dict.fromkeys(slots))
    assigned: set[str] = set()
    for klass in cls.__mro__:
        if klass is object:
            continue
        assigned |= _assigned_on_self(klass)
    return tuple(sorted(assigned))


def _as_tuple(slots: str | Iterable[str]) -> tuple[str, ...]:
    return (slots,) if isinstance(slots, str) else tuple(slots)


def _assigned_on_self(klass: type) -> set[str]:
    """Names assigned as ``self.<name>`` in the methods ``klass`` itself defines (each read
    from its code object's file, so a method added or replaced at run time counts too)."""
    names: set[str] = set()
    for member in vars(klass).values():
        if isinstance(member, staticmethod | classmethod):
            member = member.__func__
        funcs = (member.fget, member.fset) if isinstance(member, property) else (member,)
        for func in funcs:
            if isinstance(func, types.FunctionType):
                names |= _self_targets(func)
    return names


def _self_targets(func: types.FunctionType) -> set[str]:
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError, SyntaxError):  # no source file (made by exec, a frozen
        return set()  # module), or a lambda's line that is not a statement on its own
    names: set[str] = set()
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            targets = [node.target]
        while targets:
            t = targets.pop()
            if isinstance(t, ast.Tuple | ast.List):
                targets.extend(t.elts)
            elif isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name):
                if t.value.id == "self":
                    names.add(t.attr)
    return names


class _ClassRecorder(pickle.Pickler):
    """A pickler that writes nowhere and notes the class of every object it is given."""

    def __init__(self) -> None:
        super().__init__(io.BytesIO(), protocol=pickle.HIGHEST_PROTOCOL)
        self.classes: set[type] = set()

    def reducer_override(self, obj: object) -> Any:
        if not isinstance(obj, _BY_REFERENCE):
            self.classes.add(type(obj))
        return NotImplemented  # pickle it as usual


def state_layout(state: object) -> Layout:
    """``{class name: attributes}`` of every class ``state``'s pickle holds instances of.

    Plain containers (dict, list, tuple, set, str, numbers) are pickled natively and are not
    listed. The cost is one pickling pass that writes nothing.

    >>> from streamfuse import Engine
    >>> layout = state_layout(Engine())
    >>> layout["streamfuse.engine.Engine"][:3]
    ('_deadlines', '_last_tick', '_made')
    >>> layout["streamfuse.config.ModalitySpec"]
    ('name', 'channel_names', 'fs', 'unit')
    """
    recorder = _ClassRecorder()
    recorder.dump(state)
    return {class_name(c): class_fields(c) for c in sorted(recorder.classes, key=class_name)}


def code_layout() -> Layout:
    """The layout a checkpoint records: ``{class name: attributes}`` of every class defined in
    the imported ``streamfuse`` modules (nested classes too), and ``{package: (version,)}`` for
    each of :data:`VERSIONED`.

    A superset of what any engine pickles, read from the code rather than from the state, so a
    save pays ~1 ms for it however large the state; the first call in a process reads the
    classes' sources (~0.3 s, paid by :func:`streamfuse.warm_up`).

    >>> layout = code_layout()
    >>> layout["streamfuse.types.Label"]
    ('device', 't_start', 't_end', 'value')
    """
    layout: Layout = {}
    for name, module in list(sys.modules.items()):
        if module is None or _top(name) != OURS:
            continue
        stack = [c for c in vars(module).values() if isinstance(c, type) and c.__module__ == name]
        while stack:
            cls = stack.pop()
            layout[class_name(cls)] = class_fields(cls)
            stack.extend(
                c for c in vars(cls).values()
                if isinstance(c, type) and c.__qualname__.startswith(cls.__qualname__ + ".")
            )
    for package in VERSIONED:
        version = _version(package)
        if version is not None:
            layout[package] = (version,)
    return dict(sorted(layout.items()))


def _top(name: str) -> str:
    return name.partition(".")[0]


def _version(package: str) -> str | None:
    module = sys.modules.get(package)
    version = getattr(module, "__version__", None)
    return str(version) if version is not None else None


def layout_changes(saved: object, state: object) -> list[str]:
    """How the classes ``state`` holds instances of (as the running code defines them) differ
    from the layout ``saved`` (:func:`code_layout` when it was pickled); empty when they match.

    Our classes are compared attribute by attribute, :data:`VERSIONED` packages' by version;
    others (NumPy, the standard library) are versioned by their own pickles. ``saved`` comes
    from a file: anything but a layout (a checkpoint from before layouts were recorded) is
    itself a change. Costs one walk of ``state`` (:func:`state_layout`): a restore's price.
    """
    if not isinstance(saved, Mapping) or not all(
        isinstance(k, str) and isinstance(v, tuple) for k, v in saved.items()
    ):
        return ["the checkpoint records no class layout (written by an older streamfuse)"]
    changes = []
    packages = set()
    for name, fields in state_layout(state).items():
        top = _top(name)
        if top in VERSIONED:
            packages.add(top)
            continue
        if top != OURS:
            continue
        old = saved.get(name)
        if old is None:
            changes.append(f"{name} is not in the checkpoint's layout")
        elif old != fields:
            gained = [f for f in fields if f not in old]
            lost = [f for f in old if f not in fields]
            what = [f"gained {gained}" if gained else "", f"lost {lost}" if lost else ""]
            changes.append(f"{name} {' and '.join(w for w in what if w) or 'reordered fields'}")
    for package in sorted(packages):
        then, now = saved.get(package), (_version(package),)
        if then != now:
            changes.append(f"{package} {then[0] if then else 'of unknown version'} -> {now[0]}")
    return changes
