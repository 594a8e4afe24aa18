"""The calculator tool: results, precedence, functions, and every way an expression is refused."""

from __future__ import annotations

import math

import pytest

from mmstudio.domain.chat.calculator import (
    MAX_DEPTH,
    MAX_LENGTH,
    CalculatorError,
    evaluate,
    format_result,
)
from mmstudio.errors import InvalidRequest


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2", 3),
        ("7 - 10", -3),
        ("6 * 7", 42),
        ("10 / 4", 2.5),
        ("7 // 2", 3),
        ("-7 // 2", -4),
        ("7 % 3", 1),
        ("-7 % 3", 2),
        ("2 ** 10", 1024),
        ("2 ** -1", 0.5),
        ("+5", 5),
        ("--5", 5),
        ("1e3", 1000.0),
        ("2.5E-2", 0.025),
        ("1_000 * 3", 3000),
        ("123456789 * 987654321", 121932631112635269),
    ],
)
def test_arithmetic(expression: str, expected: float) -> None:
    result = evaluate(expression)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("2 + 3 * 4", 14),
        ("(2 + 3) * 4", 20),
        ("2 * 3 ** 2", 18),
        ("-2 ** 2", -4),  # power binds tighter than unary minus
        ("(-2) ** 2", 4),
        ("2 ** 3 ** 2", 512),  # right-associative
        ("100 / 10 / 5", 2.0),  # left-associative
        ("10 - 4 - 3", 3),
        ("((((1 + 2))))", 3),
    ],
)
def test_precedence(expression: str, expected: float) -> None:
    assert evaluate(expression) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [("2^10", 1024), ("-2^2", -4), ("2^3^2", 512), ("3 * 2^2", 12), ("2^-2", 0.25)],
)
def test_caret_is_power_not_xor(expression: str, expected: float) -> None:
    assert evaluate(expression) == expected


def test_typographic_operators() -> None:
    assert evaluate("6 \u00d7 7 \u2212 2 \u00f7 1") == 40.0


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("pi", math.pi),
        ("e", math.e),
        ("tau / 2", math.pi),
        ("sqrt(16)", 4.0),
        ("sin(pi / 2)", 1.0),
        ("cos(0)", 1.0),
        ("tan(0)", 0.0),
        ("asin(1)", math.pi / 2),
        ("acos(1)", 0.0),
        ("atan(1) * 4", math.pi),
        ("log(e)", 1.0),
        ("log(8, 2)", 3.0),
        ("log10(1000)", 3.0),
        ("log2(1024)", 10.0),
        ("exp(0)", 1.0),
        ("abs(-3)", 3),
        ("round(2.567, 2)", 2.57),
        ("round(2.6)", 3),
        ("round(1234, -2)", 1200),
        ("floor(2.7)", 2),
        ("ceil(2.1)", 3),
        ("floor(-2.5)", -3),
        ("min(3, 1, 2)", 1),
        ("max(3, 1, 2)", 3),
        ("max(4)", 4),
        ("factorial(5)", 120),
        ("factorial(0)", 1),
        ("factorial(10 / 2)", 120),  # a whole float is a whole number
        ("sqrt(max(9, 4)) + abs(-1)", 4.0),
    ],
)
def test_functions_and_constants(expression: str, expected: float) -> None:
    assert evaluate(expression) == pytest.approx(expected, abs=1e-12)


def test_factorial_bound_is_inclusive() -> None:
    assert evaluate("factorial(170)") == math.factorial(170)


def test_long_flat_sums_are_not_too_deep() -> None:
    expression = "+".join(["1"] * 200)  # a left-leaning chain 200 nodes deep
    assert evaluate(expression) == 200


def test_largest_allowed_power_is_computed_exactly() -> None:
    assert evaluate("2 ** 3000") == 2**3000


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("().__class__", "attribute access is not allowed"),
        ("pi.real", "attribute access is not allowed"),
        ("math.sqrt(2)", "attribute access is not allowed"),
        ("__import__('os')", "unknown function '__import__'"),
        ("open('x')", "unknown function 'open'"),
        ("eval('1')", "unknown function 'eval'"),
        ("(lambda: 1)()", "only the allowed functions can be called"),
        ("lambda: 1", "lambda is not allowed"),
        ("[x for x in (1, 2)]", "comprehensions are not allowed"),
        ("sum(x for x in (1, 2))", "unknown function 'sum'"),
        ("max(x for x in (1, 2))", "comprehensions are not allowed"),
        ("{x: 1 for x in (1,)}", "comprehensions are not allowed"),
        ("'a'", "strings are not allowed"),
        ("'a' * 10", "strings are not allowed"),
        ("f'{1}'", "strings are not allowed"),
        ("b'1'", "strings are not allowed"),
        ("foo", "unknown name 'foo'"),
        ("x + 1", "unknown name 'x'"),
        ("sqrt", "'sqrt' is a function; call it"),
        ("1 < 2", "comparisons are not allowed"),
        ("1 and 2", "'and' and 'or' are not allowed"),
        ("1 if 1 else 2", "conditional expressions are not allowed"),
        ("(x := 1)", "assignment is not allowed"),
        ("1,000", "tuples are not allowed (write 1000, not 1,000)"),
        ("[1, 2]", "lists are not allowed"),
        ("{1, 2}", "sets are not allowed"),
        ("{1: 2}", "dicts are not allowed"),
        ("(1,)[0]", "indexing is not allowed"),
        ("max(*(1, 2))", "star arguments are not allowed"),
        ("True + 1", "True is not a number"),
        ("None", "None is not a number"),
        ("2j", "complex numbers are not allowed"),
        ("6 & 3", "the operator '&' is not allowed"),
        ("6 | 3", "the operator '|' is not allowed"),
        ("1 << 3", "the operator '<<' is not allowed"),
        ("~1", "the operator '~' is not allowed"),
        ("not 1", "the operator 'not' is not allowed"),
        ("sqrt(x=4)", "sqrt() takes no keyword arguments"),
        ("sqrt(1, 2)", "sqrt() takes 1 argument; got 2"),
        ("log(1, 2, 3)", "log() takes 1 or 2 arguments; got 3"),
        ("min()", "min() takes at least 1 argument; got 0"),
    ],
)
def test_refuses_what_is_not_arithmetic(expression: str, message: str) -> None:
    with pytest.raises(CalculatorError) as caught:
        evaluate(expression)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "expression", ["foo", "().__class__", "'a'", "lambda: 1", "[x for x in (1,)]", "open('x')", "1 < 2"]
)
def test_refusals_say_what_is_allowed(expression: str) -> None:
    with pytest.raises(CalculatorError) as caught:
        evaluate(expression)
    assert "allowed: numbers, + - * / // % ** (or ^), parentheses" in str(caught.value)
    assert "pi, e, tau" in str(caught.value)
    assert "sqrt, sin" in str(caught.value)
    assert "factorial" in str(caught.value)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("1 / 0", "division by zero"),
        ("1 // 0", "division by zero"),
        ("1 % 0", "division by zero"),
        ("1.5 / 0.0", "division by zero"),
        ("0 ** -1", "division by zero"),
        ("sqrt(-1)", "sqrt() is not defined for -1"),
        ("log(0)", "log() is not defined for 0"),
        ("asin(2)", "asin() is not defined for 2"),
        ("(-8) ** (1 / 3)", "a negative number to a fractional power is not a real number"),
        ("exp(1000)", "the result of exp() is too large"),
        ("1e400", "too large"),
        ("1e308 * 10", "too large"),
        ("2.0 ** 5000", "the power is too large"),
        ("10 ** 999 * 10", "at most 1000 digits"),
        ("factorial(171)", "factorial() takes a whole number from 0 to 170; got 171"),
        ("factorial(-1)", "factorial() takes a whole number from 0 to 170; got -1"),
        ("factorial(2.5)", "factorial() takes a whole number; got 2.5"),
        ("round(1.5, 0.5)", "round() takes a whole number; got 0.5"),
        ("sqrt(10 ** 400)", "the result of sqrt() is too large"),
        ("", "the expression is empty"),
        ("   ", "the expression is empty"),
        ("1 +", "could not parse '1 +'"),
        ("2 ** ** 3", "could not parse"),
    ],
)
def test_arithmetic_errors(expression: str, message: str) -> None:
    with pytest.raises(CalculatorError) as caught:
        evaluate(expression)
    assert message in str(caught.value)


@pytest.mark.parametrize("expression", ["9**9**9", "9^9^9", "10 ** 1001", "(10 ** 500) ** 3", "0.5 ** -5000"])
def test_huge_powers_are_refused_without_computing_them(expression: str) -> None:
    with pytest.raises(CalculatorError, match="the power is too large"):
        evaluate(expression)


def test_power_with_a_huge_exponent_is_refused() -> None:
    with pytest.raises(CalculatorError, match="the power is too large"):
        evaluate("2 ** (10 ** 400)")


def test_powers_of_zero_one_and_minus_one_stay_cheap() -> None:
    assert evaluate("1 ** (10 ** 400)") == 1
    assert evaluate("(-1) ** (10 ** 400 + 1)") == -1
    assert evaluate("0 ** (10 ** 400)") == 0


def test_length_is_bounded() -> None:
    assert evaluate("1" + " " * (MAX_LENGTH - 1)) == 1
    with pytest.raises(
        CalculatorError, match=f"too long \\({MAX_LENGTH + 1} characters\\); at most {MAX_LENGTH}"
    ):
        evaluate("1" + " " * MAX_LENGTH)


def test_nesting_depth_is_bounded() -> None:
    assert evaluate("-" * (MAX_DEPTH - 1) + "1") == -1
    with pytest.raises(CalculatorError, match=f"nests too deeply \\(more than {MAX_DEPTH} levels\\)"):
        evaluate("-" * (MAX_DEPTH + 5) + "1")
    with pytest.raises(CalculatorError, match="nests too deeply"):
        evaluate("sqrt(" * 60 + "1" + ")" * 60)


def test_parser_limits_become_calculator_errors() -> None:
    with pytest.raises(CalculatorError, match="could not parse"):
        evaluate("(" * 240 + "1" + ")" * 240)
    with pytest.raises(CalculatorError, match="could not parse"):
        evaluate("1 + \x00")


def test_structure_is_checked_before_anything_is_computed() -> None:
    with pytest.raises(CalculatorError, match="unknown name 'x'"):
        evaluate("9**9**9 + x")


def test_calculator_error_is_an_invalid_request_on_the_expression_field() -> None:
    with pytest.raises(InvalidRequest) as caught:
        evaluate("foo")
    assert isinstance(caught.value, CalculatorError)
    assert caught.value.field == "expression"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (3, "3"),
        (-12, "-12"),
        (10**30, "1" + "0" * 30),
        (0.1 + 0.2, "0.3"),
        (2.0, "2"),
        (2.5, "2.5"),
        (-0.0, "0"),
        (1 / 3, "0.333333333333"),
        (2 / 3, "0.666666666667"),
        (123456.789, "123456.789"),
        (1e20, "1e20"),
        (1.5e-7, "1.5e-7"),
        (math.pi, "3.14159265359"),
        (float("inf"), "inf"),
    ],
)
def test_format_result(value: float, text: str) -> None:
    assert format_result(value) == text


def test_format_result_of_an_evaluation() -> None:
    assert format_result(evaluate("0.1 + 0.2")) == "0.3"
    assert format_result(evaluate("6 / 3")) == "2"
