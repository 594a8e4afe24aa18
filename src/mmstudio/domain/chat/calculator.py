"""The agent's calculator tool: a safe arithmetic evaluator over Python's `ast` (never eval or exec).

Accepted: numbers (int, float, scientific notation), + - * / // % **, unary + and -, parentheses,
the names pi, e and tau, and the functions in `FUNCTIONS`. `^` means power, as people type it
(2^10 = 1024), not Python's bitwise xor; like `**` it binds tighter than unary minus (-2^2 = -4) and
groups to the right (2^3^2 = 2^9). The typographic multiplication, division and minus signs are read as * / -.

Every answer is bounded so a model cannot make the server spin: the expression's length, how deeply
it nests, the size of integers (at most 1000 digits), powers (refused before computing when the
result would be larger) and factorial (n <= 170). Whatever is wrong raises `CalculatorError`, whose
message says what was wrong and what is allowed.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from dataclasses import dataclass

from mmstudio.errors import InvalidRequest

Number = int | float

MAX_LENGTH = 500
MAX_DEPTH = 50
MAX_DIGITS = 1000
MAX_FACTORIAL = 170  # 171! no longer fits a float, which is where results usually end up

_INT_LIMIT = 10**MAX_DIGITS

CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}


class CalculatorError(InvalidRequest):
    """The expression is not something the calculator evaluates; the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="expression")


@dataclass(frozen=True, slots=True)
class _Function:
    min_args: int
    max_args: int | None  # None: any number
    apply: Callable[..., Number]


def _whole(name: str, value: Number) -> int:
    if isinstance(value, float):
        if not value.is_integer():
            raise CalculatorError(f"{name}() takes a whole number; got {format_result(value)}")
        return int(value)
    return value


def _factorial(n: Number) -> int:
    whole = _whole("factorial", n)
    if not 0 <= whole <= MAX_FACTORIAL:
        raise CalculatorError(f"factorial() takes a whole number from 0 to {MAX_FACTORIAL}; got {whole}")
    return math.factorial(whole)


def _round(x: Number, ndigits: Number | None = None) -> Number:
    if ndigits is None:
        return round(x)
    return round(x, _whole("round", ndigits))


def _log(x: Number, base: Number | None = None) -> float:
    return math.log(x) if base is None else math.log(x, base)


FUNCTIONS: dict[str, _Function] = {
    "sqrt": _Function(1, 1, math.sqrt),
    "sin": _Function(1, 1, math.sin),
    "cos": _Function(1, 1, math.cos),
    "tan": _Function(1, 1, math.tan),
    "asin": _Function(1, 1, math.asin),
    "acos": _Function(1, 1, math.acos),
    "atan": _Function(1, 1, math.atan),
    "log": _Function(1, 2, _log),
    "log10": _Function(1, 1, math.log10),
    "log2": _Function(1, 1, math.log2),
    "exp": _Function(1, 1, math.exp),
    "abs": _Function(1, 1, abs),
    "round": _Function(1, 2, _round),
    "floor": _Function(1, 1, math.floor),
    "ceil": _Function(1, 1, math.ceil),
    "min": _Function(1, None, lambda *args: min(args)),
    "max": _Function(1, None, lambda *args: max(args)),
    "factorial": _Function(1, 1, _factorial),
}

ALLOWED = (
    "numbers, + - * / // % ** (or ^), parentheses, the names "
    + ", ".join(CONSTANTS)
    + " and the functions "
    + ", ".join(FUNCTIONS)
)

_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
}

_ALLOWED_OPERATORS: frozenset[type[ast.AST]] = frozenset({*_BINARY, ast.Pow, ast.UAdd, ast.USub})

_OPERATOR_SYMBOLS: dict[type[ast.AST], str] = {
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.MatMult: "@",
    ast.Invert: "~",
    ast.Not: "not",
}

_NOT_ALLOWED: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access is not allowed",
    ast.Subscript: "indexing is not allowed",
    ast.Lambda: "lambda is not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.JoinedStr: "strings are not allowed",
    ast.Compare: "comparisons are not allowed",
    ast.BoolOp: "'and' and 'or' are not allowed",
    ast.IfExp: "conditional expressions are not allowed",
    ast.NamedExpr: "assignment is not allowed",
    ast.Starred: "star arguments are not allowed",
    # A comma makes a tuple, and people write thousands separators.
    ast.Tuple: "tuples are not allowed (write 1000, not 1,000)",
    ast.List: "lists are not allowed",
    ast.Set: "sets are not allowed",
    ast.Dict: "dicts are not allowed",
}

_TYPOGRAPHIC = str.maketrans(
    {"\u00d7": "*", "\u00f7": "/", "\u2212": "-"}
)  # multiplication, division and minus signs


def evaluate(expression: str) -> Number:
    """The value of an arithmetic expression, or `CalculatorError` saying what is wrong."""
    if len(expression) > MAX_LENGTH:
        raise CalculatorError(
            f"the expression is too long ({len(expression)} characters); at most {MAX_LENGTH} are allowed"
        )
    source = expression.translate(_TYPOGRAPHIC).replace("^", "**").strip()
    if not source:
        raise CalculatorError(f"the expression is empty; allowed: {ALLOWED}")
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as e:
        raise CalculatorError(
            f"could not parse {expression!r}: {e.msg}; write arithmetic such as 2 * (3 + 4) / 5"
        ) from e
    except (ValueError, RecursionError, MemoryError) as e:  # null bytes; the parser's own limits
        raise CalculatorError(f"could not parse {expression!r}; allowed: {ALLOWED}") from e
    _check(tree)
    return _eval(tree.body, 0)


def format_result(value: Number) -> str:
    """Integers as they are; floats with at most 12 significant digits and no trailing zeros."""
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    # 12 digits hide binary rounding noise: 0.1 + 0.2 shows as 0.3.
    text = f"{value:.12g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return "0" if text == "-0" else text


def _check(tree: ast.Expression) -> None:
    """Refuse anything but arithmetic before evaluating any of it, so structure errors come first."""
    called: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            _check_call(node)
            called.add(id(node.func))
        elif isinstance(node, ast.Name):
            _check_name(node, called=id(node) in called)
        elif isinstance(node, ast.Constant):
            _check_constant(node)
        elif isinstance(node, ast.BinOp | ast.UnaryOp):
            if type(node.op) not in _ALLOWED_OPERATORS:
                _refuse_operator(node.op)
        elif isinstance(node, ast.Expression | ast.Load | ast.operator | ast.unaryop):
            continue
        else:
            reason = _NOT_ALLOWED.get(type(node), f"{type(node).__name__} is not allowed")
            raise CalculatorError(f"{reason}; allowed: {ALLOWED}")


def _check_call(node: ast.Call) -> None:
    if isinstance(node.func, ast.Attribute):
        raise CalculatorError(f"attribute access is not allowed; allowed: {ALLOWED}")
    if not isinstance(node.func, ast.Name):
        raise CalculatorError(f"only the allowed functions can be called, by name; allowed: {ALLOWED}")
    name = node.func.id
    if name not in FUNCTIONS:
        raise CalculatorError(f"unknown function {name!r}; allowed: {ALLOWED}")
    if node.keywords:
        raise CalculatorError(f"{name}() takes no keyword arguments")
    function = FUNCTIONS[name]
    count = len(node.args)
    if count < function.min_args or (function.max_args is not None and count > function.max_args):
        raise CalculatorError(f"{name}() takes {_arity(function)}; got {count}")


def _arity(function: _Function) -> str:
    if function.max_args is None:
        return f"at least {function.min_args} argument{'s' if function.min_args > 1 else ''}"
    if function.min_args == function.max_args:
        return f"{function.min_args} argument{'s' if function.min_args > 1 else ''}"
    return f"{function.min_args} or {function.max_args} arguments"


def _check_name(node: ast.Name, *, called: bool) -> None:
    if node.id in CONSTANTS or (called and node.id in FUNCTIONS):
        return
    if node.id in FUNCTIONS:
        raise CalculatorError(f"{node.id!r} is a function; call it, as in {node.id}(2)")
    raise CalculatorError(f"unknown name {node.id!r}; allowed: {ALLOWED}")


def _check_constant(node: ast.Constant) -> None:
    # `type(...) in` rather than isinstance: True is an int to Python but not a number to a user.
    if type(node.value) in (int, float):
        return
    if isinstance(node.value, str | bytes):
        raise CalculatorError(f"strings are not allowed; allowed: {ALLOWED}")
    if isinstance(node.value, complex):
        raise CalculatorError(f"complex numbers are not allowed; allowed: {ALLOWED}")
    raise CalculatorError(f"{node.value!r} is not a number; allowed: {ALLOWED}")


def _refuse_operator(op: ast.AST) -> None:
    symbol = _OPERATOR_SYMBOLS.get(type(op), type(op).__name__)
    raise CalculatorError(f"the operator {symbol!r} is not allowed; allowed: {ALLOWED}")


def _eval(node: ast.expr, depth: int) -> Number:
    if depth > MAX_DEPTH:
        raise CalculatorError(f"the expression nests too deeply (more than {MAX_DEPTH} levels)")
    if isinstance(node, ast.Constant):
        return _bounded(node.value)
    if isinstance(node, ast.Name):
        return CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, depth + 1)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp):
        # A long sum such as 1+2+...+99 is a left-leaning chain as deep as it is long; walking the
        # chain in a loop keeps it at one level, so the depth limit only counts real nesting.
        chain: list[ast.BinOp] = []
        left: ast.expr = node
        while isinstance(left, ast.BinOp) and not isinstance(left.op, ast.Pow):
            chain.append(left)
            left = left.left
        value = _eval(left, depth + 1) if chain else _power_node(node, depth)
        for binop in reversed(chain):
            value = _binary(binop.op, value, _eval(binop.right, depth + 1))
        return value
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)  # _check allowed nothing else
        args = [_eval(arg, depth + 1) for arg in node.args]
        return _call(node.func.id, args)
    raise CalculatorError(f"{type(node).__name__} is not allowed; allowed: {ALLOWED}")  # pragma: no cover


def _power_node(node: ast.BinOp, depth: int) -> Number:
    return _power(_eval(node.left, depth + 1), _eval(node.right, depth + 1))


def _binary(op: ast.operator, left: Number, right: Number) -> Number:
    try:
        return _bounded(_BINARY[type(op)](left, right))
    except ZeroDivisionError as e:
        raise CalculatorError("division by zero") from e
    except OverflowError as e:
        raise CalculatorError("the result is too large") from e


def _power(base: Number, exponent: Number) -> Number:
    if abs(base) not in (0, 1):
        # Estimate the size of the answer before computing it: 9**9**9 would take minutes and
        # gigabytes, and its digit count is cheap to know. (Powers of 0, 1 and -1 stay small.)
        try:
            digits = float(exponent) * math.log10(abs(base))
        except OverflowError as e:
            raise CalculatorError(f"the power is too large: at most {MAX_DIGITS} digits are allowed") from e
        if digits > MAX_DIGITS:
            raise CalculatorError(
                f"the power is too large: the result would have about {digits:.3g} digits; "
                f"at most {MAX_DIGITS} are allowed"
            )
    if base < 0 and isinstance(exponent, float) and not exponent.is_integer():
        raise CalculatorError("a negative number to a fractional power is not a real number")
    try:
        return _bounded(base**exponent)
    except ZeroDivisionError as e:
        raise CalculatorError("division by zero (zero to a negative power)") from e
    except OverflowError as e:
        raise CalculatorError("the result is too large") from e


def _call(name: str, args: list[Number]) -> Number:
    try:
        return _bounded(FUNCTIONS[name].apply(*args))
    except ZeroDivisionError as e:
        raise CalculatorError("division by zero") from e
    except OverflowError as e:
        raise CalculatorError(f"the result of {name}() is too large") from e
    except ValueError as e:  # the math module's "math domain error"
        shown = ", ".join(format_result(arg) for arg in args)
        raise CalculatorError(f"{name}() is not defined for {shown}") from e


def _bounded(value: object) -> Number:
    if type(value) is int:
        if abs(value) >= _INT_LIMIT:
            raise CalculatorError(f"the result is too large: at most {MAX_DIGITS} digits are allowed")
        return value
    if type(value) is float:
        if not math.isfinite(value):
            raise CalculatorError("the result is too large (not a finite number)")
        return value
    raise CalculatorError(f"the result is not a real number; allowed: {ALLOWED}")
