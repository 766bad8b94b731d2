"""The Jinja sandbox a spec's template runs in, with a budget: what one render may cost.

Jinja's SandboxedEnvironment keeps a template away from Python's internals, but not from the
CPU or memory: nested `range` loops ran 10^8 iterations, and `"x" * 10**9` or a list doubled
forty times is one expression. Here every loop iteration, call and filter spends a step from a
per-render budget that also carries a deadline; operators and outputs that could build a huge
value measure their operands first. Past a limit the render stops with `TemplateBudget`, which
the loader reports as a SpecError naming the OsmoConfig knob.

The template's AST is rewritten before it is compiled (the sandbox has no hook for them):
each `for` iterates through `__osmo_iter`, and each operand of `~` and of comparisons passes
through `__osmo_sized`.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import operator
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.sandbox import SandboxedEnvironment
from jinja2.visitor import NodeTransformer

from .limits import SpecLimits

_ITER = "__osmo_iter"
_SIZED = "__osmo_sized"
_WIDTH = re.compile(r"\d+")  # a width or precision in a format string


class TemplateBudget(Exception):
    """A render went past a limit; `knob` is the OsmoConfig trait that sets it."""

    def __init__(self, message: str, knob: str):
        super().__init__(message)
        self.knob = knob


class Budget:
    __slots__ = ("deadline", "left", "limits")

    def __init__(self, limits: SpecLimits):
        self.limits = limits
        self.left = limits.template_steps
        self.deadline = time.monotonic() + limits.template_seconds

    def spend(self, n: int = 1) -> None:
        self.left -= n
        if self.left < 0:
            raise TemplateBudget(
                f"the template takes more than {self.limits.template_steps} steps "
                "(loop iterations and calls)",
                "template_max_steps",
            )
        if self.left & 255 == 0:
            self.in_time()

    def in_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateBudget(
                f"the template takes longer than {self.limits.template_seconds:g}s to render",
                "template_timeout",
            )

    def sized(self, value: Any) -> Any:
        """`value`, once known to be small enough to print or compare: strings up to the
        rendered-size limit, containers up to the node limit (shared parts counted each time
        they are reached, as printing reaches them)."""
        cap = self.limits.rendered_bytes
        if isinstance(value, str):
            if len(value) > cap:
                raise self._too_big(len(value))
            return value
        if not isinstance(value, _CONTAINERS):
            return value
        n, limit = 0, self.limits.nodes
        stack: list[Any] = [value]
        pop, extend = stack.pop, stack.extend
        while stack:
            v = pop()
            n += 1
            if type(v) in _SEQUENCES:
                extend(v)
            elif type(v) is dict:
                extend(v.keys())
                extend(v.values())
            elif isinstance(v, str):
                if len(v) > cap:
                    raise self._too_big(len(v))
            elif isinstance(v, _CONTAINERS):  # subclasses
                extend(v.items() if isinstance(v, Mapping) else v)
            if n > limit:
                raise TemplateBudget(
                    f"a template value has more than {limit} items", "max_spec_nodes"
                )
            if n & 4095 == 0:
                self.in_time()
        return value

    def _too_big(self, size: int) -> TemplateBudget:
        return TemplateBudget(
            f"a template value has {size} characters; at most {self.limits.rendered_bytes}",
            "max_rendered_bytes",
        )


_SEQUENCES = frozenset({list, tuple, set, frozenset})
_CONTAINERS = (Mapping, list, tuple, set, frozenset)

_BUDGET: contextvars.ContextVar[Budget] = contextvars.ContextVar("osmo_template_budget")


def budget() -> Budget:
    return _BUDGET.get()


class _Guard(NodeTransformer):
    """Route loops, concatenations and comparisons through the budget."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _call(_ITER, node.iter)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        node.nodes = [_call(_SIZED, n) for n in node.nodes]
        return node

    def visit_Compare(self, node: nodes.Compare) -> nodes.Node:
        self.generic_visit(node)
        node.expr = _call(_SIZED, node.expr)
        for op in node.ops:
            op.expr = _call(_SIZED, op.expr)
        return node


def _call(name: str, arg: nodes.Node) -> nodes.Call:
    return nodes.Call(nodes.Name(name, "load"), [arg], [], None, None, lineno=arg.lineno)


def _iterate(iterable: Iterable[Any]) -> Iterator[Any]:
    b = budget()
    for item in iterable:
        b.spend()
        yield item


def _check_args(b: Budget, args: Iterable[Any]) -> None:
    """No argument may ask for more than the output may hold (`"x".ljust(10**9)`)."""
    cap = b.limits.rendered_bytes
    for a in args:
        if isinstance(a, int) and not isinstance(a, bool) and abs(a) > cap:
            raise TemplateBudget(f"a template argument is {a}; at most {cap}", "max_rendered_bytes")
        b.sized(a)


def _check_format(b: Budget, fmt: Any) -> None:
    """A width or precision in a format string builds that many characters."""
    if isinstance(fmt, str):
        cap = b.limits.rendered_bytes
        if any(len(m) > 9 or int(m) > cap for m in _WIDTH.findall(fmt)):
            raise TemplateBudget(
                f"a format in the template asks for more than {cap} characters",
                "max_rendered_bytes",
            )


def _guard_filter(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    @functools.wraps(fn)  # keeps jinja's pass_context/pass_environment marks
    def guarded(*args: Any, **kwargs: Any) -> Any:
        b = budget()
        b.spend()
        _check_args(b, [*args, *kwargs.values()])
        if name == "format" and args:
            _check_format(b, next((a for a in args if isinstance(a, str)), None))
        return fn(*args, **kwargs)

    return guarded


class BudgetSandbox(SandboxedEnvironment):
    """SandboxedEnvironment whose calls, filters, loops, operators and outputs spend from
    the render's Budget."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, **kwargs: Any):
        super().__init__(finalize=lambda v: budget().sized(v), **kwargs)
        self.filters = {k: _guard_filter(f, k) for k, f in self.filters.items()}
        self.globals[_ITER] = _iterate
        self.globals[_SIZED] = lambda v: budget().sized(v)

    def guarded_ast(self, ast: nodes.Template) -> nodes.Template:
        # jinja2's NodeTransformer.visit returns Any
        return _Guard().visit(ast)  # type: ignore[no-any-return]

    def call(
        __self,
        __context: jinja2.runtime.Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        b = budget()
        b.spend()
        _check_args(b, [*args, *kwargs.values()])
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str) and getattr(__obj, "__name__", "") in ("format", "format_map"):
            _check_format(b, owner)
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context: jinja2.runtime.Context, op: str, left: Any, right: Any) -> Any:
        b = budget()
        b.spend()
        b.sized(left)
        b.sized(right)
        if op == "%" and isinstance(left, str):
            _check_format(b, left)
        elif _result_size(op, left, right) > b.limits.rendered_bytes:
            raise TemplateBudget(
                f"`{op}` in the template would make a value larger than {b.limits.rendered_bytes}",
                "max_rendered_bytes",
            )
        return _BINOPS[op](left, right)


_BINOPS = {"*": operator.mul, "**": operator.pow, "%": operator.mod, "+": operator.add}
_SEQ = (str, list, tuple)


def _result_size(op: str, left: Any, right: Any) -> int:
    """About how big `left op right` would be: items of a sequence, bytes of an integer."""
    if isinstance(left, int) and isinstance(right, int):
        if op == "**" and right > 0 and abs(left) > 1:
            return left.bit_length() * right // 8
        if op == "*":
            return (left.bit_length() + right.bit_length()) // 8
    if op == "*":
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, _SEQ) and isinstance(n, int):
                return len(seq) * max(n, 0)
    if op == "+" and isinstance(left, _SEQ) and isinstance(right, _SEQ):
        return len(left) + len(right)
    return 0


@contextlib.contextmanager
def spending(limits: SpecLimits) -> Iterator[Budget]:
    """A fresh budget for what runs inside (Jinja's optimizer already calls filters while it
    compiles)."""
    token = _BUDGET.set(Budget(limits))
    try:
        yield _BUDGET.get()
    finally:
        _BUDGET.reset(token)


def render(env: BudgetSandbox, ast: nodes.Template, values: dict[str, Any]) -> str:
    """The template's output within the current budget (TemplateBudget otherwise)."""
    b = budget()
    cap = b.limits.rendered_bytes
    size = 0
    parts: list[str] = []
    for chunk in env.from_string(env.guarded_ast(ast)).generate(values):
        size += len(chunk)
        if size > cap:
            raise TemplateBudget(
                f"the template renders more than {cap} characters", "max_rendered_bytes"
            )
        parts.append(chunk)
        b.spend()
    return "".join(parts)
