"""Objective expressions from the command line: ``"fc8:130 + 0.5 * fc8:131"`` -> an ``Objective``.

Grammar (whitespace ignored; parsed by hand, never ``eval``)::

    expr   := term (("+" | "-") term)*
    term   := factor (("*" | "/") factor)*
    factor := ("-" | "+") factor | NUMBER | SPEC | LATENT | "(" expr ")"
    SPEC   := LAYER ":" channel [":" token | ":" y ":" x] ["@" batch]   e.g. _blocks.10:97, conv1:2:4:4, fc8:3@1
    LATENT := DICT [".pre" | ".act"] "#" latent ["@" batch]            e.g. sae#12, sae.act#12@0

``LAYER`` is a module name: letters, digits, ``_ . /`` (``features.3``, ``2`` in an ``nn.Sequential``,
``inception_4c/output``), and ``@`` followed by a letter (Caffe's in-place taps, ``conv2@relu2``); a term is told
from a number by its ``:``. ``layer:channel`` is
``objectives.channel``, ``layer:channel:y:x`` is ``objectives.neuron`` (y, x on the grid; a token layer's patch grid),
``layer:channel:token`` is ``objectives.neuron(..., token=...)`` (one token of a token layer by its index) and ``@b`` restricts it to batch element
b (``channel(..., batch=b)``; a term without ``@`` takes the parser's ``default_batch``). ``DICT#k`` is latent k
of the dictionary named DICT (``dictionaries``: name -> ``LayerDictionary``, the command lines' ``--dictionary
NAME=LAYER=PATH``), ``objectives.dictionary_latent`` on its layer: its pre-activation (``DICT#k``, ``DICT.pre#k``) or
its activation (``DICT.act#k``), averaged over positions. ``#`` is used nowhere else, so a latent term cannot be
read as a layer (``@`` is the batch and Caffe's in-place taps, ``:`` the channel). Objectives add and
subtract; they multiply and divide by numbers only. A malformed expression is a one-line ``UsageError`` that shows
where it went wrong. This is the one grammar of objectives: ``create_objective``, both command lines and both
engines read strings through ``parse_objective``.
"""

from __future__ import annotations

import re
from typing import List, Mapping, Optional, Tuple, Union

from dvtoolbox.errors import UsageError
from dvtoolbox.objectives.library import channel, dictionary_latent, neuron
from dvtoolbox.objectives.objective import Batch, Objective

TOKEN = re.compile(r"\s*(?:(?P<latent>[A-Za-z_]\w*(?:\.(?:pre|act))?#\d+(?:@\d+)?)|"
                   r"(?P<spec>[\w./]+(?:@[A-Za-z_][\w./]*)*(?::\d+)+(?:@\d+)?)|"
                   r"(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<op>[-+*/()]))")

Value = Union[Objective, float]


def tokenize(text: str) -> List[Tuple[str, str, int]]:
    """(kind, text, position) for each token; kind is spec, number or op. A character that starts no token is a
    UsageError."""
    tokens, pos, text = [], 0, str(text)
    while pos < len(text.rstrip()):
        match = TOKEN.match(text, pos)
        if match is None:
            raise UsageError(f"objective {text!r}: cannot read {text[pos:].strip()[:20]!r} at position {pos}; "
                             "write layer:channel[:y:x][@batch] or DICT#latent terms joined by + - and numeric * /")
        kind = match.lastgroup
        tokens.append((kind, match.group(kind), match.start(kind)))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str, default_batch: Batch = None, dictionaries: Optional[Mapping] = None):
        self.text, self.tokens, self.i = text, tokenize(text), 0
        self.default_batch = default_batch
        self.dictionaries = dict(dictionaries or {})

    def peek(self) -> Optional[Tuple[str, str, int]]:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def fail(self, what: str):
        token = self.peek()
        where = f"at {token[1]!r} (position {token[2]})" if token else "at the end"
        raise UsageError(f"objective {self.text!r}: {what} {where}")

    def take(self, op: str) -> bool:
        token = self.peek()
        if token is not None and token[0] == "op" and token[1] == op:
            self.i += 1
            return True
        return False

    def expr(self) -> Value:
        value = self.term()
        while True:
            if self.take("+"):
                value = value + self.term()
            elif self.take("-"):
                value = value - self.term()
            else:
                return value

    def term(self) -> Value:
        value = self.factor()
        while True:
            if self.take("*"):
                value = _multiply(value, self.factor(), self.text)
            elif self.take("/"):
                divisor = self.factor()
                if isinstance(divisor, Objective) or divisor == 0:
                    raise UsageError(f"objective {self.text!r}: can only divide by a non-zero number")
                value = value / divisor
            else:
                return value

    def factor(self) -> Value:
        if self.take("-"):
            return -self.factor()
        if self.take("+"):
            return self.factor()
        if self.take("("):
            value = self.expr()
            if not self.take(")"):
                self.fail("expected ')'")
            return value
        token = self.peek()
        if token is None or token[0] == "op":
            self.fail("expected a layer:channel term or a number")
        self.i += 1
        if token[0] == "number":
            return float(token[1])
        if token[0] == "latent":
            return self.latent(token[1])
        return self.unit(token[1])

    def latent(self, spec: str) -> Objective:
        """``DICT[.pre|.act]#k[@batch]`` -> dictionary_latent(...) on the dictionary's layer."""
        name, kind, k, batch = re.fullmatch(r"([A-Za-z_]\w*?)(?:\.(pre|act))?#(\d+)(?:@(\d+))?", spec).groups()
        if name not in self.dictionaries:
            known = ", ".join(sorted(self.dictionaries)) or "none (give --dictionary NAME=LAYER=PATH)"
            raise UsageError(f"objective {self.text!r}: unknown dictionary {name!r} in {spec!r}; dictionaries: "
                             f"{known}", "dictionary")
        bound = self.dictionaries[name]
        batch = int(batch) if batch else self.default_batch
        objective = dictionary_latent(bound.layer, bound.dictionary, int(k), pre_activation=kind != "act",
                                      **({} if batch is None else {"batch": batch}))
        objective.description = f"{name}{'.act' if kind == 'act' else ''}#{int(k)} ({bound.layer})"
        return objective

    def unit(self, spec: str) -> Objective:
        """``layer:channel[:y:x][@batch]`` -> channel(...) or neuron(...)."""
        spec, batch = re.fullmatch(r"(.+?)(?:@(\d+))?", spec).groups()
        layer, *numbers = spec.split(":")
        if len(numbers) not in (1, 2, 3):
            raise UsageError(f"objective {self.text!r}: a term is layer:channel, layer:channel:token or "
                             f"layer:channel:y:x, got {spec!r}")
        extra = {"batch": int(batch)} if batch else ({} if self.default_batch is None else
                                                     {"batch": self.default_batch})
        values = [int(n) for n in numbers]
        if len(values) == 1:
            return channel(layer, values[0], **extra)
        if len(values) == 2:
            return neuron(layer, values[0], token=values[1], **extra)
        return neuron(layer, values[0], x=values[2], y=values[1], **extra)


def _multiply(a: Value, b: Value, text: str) -> Value:
    if isinstance(a, Objective) and isinstance(b, Objective):
        raise UsageError(f"objective {text!r}: two objectives cannot be multiplied; scale them by numbers")
    return b * a if isinstance(b, Objective) else a * b


def parse_objective(text: str, default_batch: Batch = None, dictionaries: Optional[Mapping] = None) -> Objective:
    """The Objective an expression describes (see the module docstring); ``dictionaries``: name ->
    ``LayerDictionary`` for ``DICT#k`` terms. To check its layers against a model, use
    ``create_objective(text, model=model)``."""
    parser = _Parser(text, default_batch, dictionaries)
    if not parser.tokens:
        raise UsageError("objective: empty expression; write e.g. 'fc8:130' or '_blocks.10:97 - 0.5 * fc8:1'")
    value = parser.expr()
    if parser.peek() is not None:
        parser.fail("unexpected")
    if not isinstance(value, Objective):
        raise UsageError(f"objective {text!r} is a number; it needs at least one layer:channel term")
    return value


def is_single_unit(text: str) -> bool:
    """True when ``text`` is one ``layer:channel`` or ``layer:channel:y:x`` term, without a factor or ``@batch``
    (what a mode that reads the unit on several images of its own needs, e.g. transparency)."""
    try:
        tokens = tokenize(text)
    except UsageError:
        return False
    return len(tokens) == 1 and tokens[0][0] == "spec" and re.search(r"@\d+$", tokens[0][1]) is None


# ---------------------------------------------------------------------------------------------------- linear forms


class NotLinear(ValueError):
    """An expression that is not a linear combination of unit terms (a constant, a product of terms, ...)."""


class LinearForm:
    """A linear combination of unit terms, what ``linear_terms`` reads: {(layer, channel, where): coefficient},
    where () for a channel, (token,) for a token, (y, x) for a position. Adds, subtracts, multiplies and divides by
    numbers; anything else raises ``NotLinear``."""

    def __init__(self, coefficients):
        self.coefficients = dict(coefficients)

    def _plus(self, other, sign: float) -> "LinearForm":
        if not isinstance(other, LinearForm):
            raise NotLinear("a constant term is not a unit (it changes no ranking): drop it")
        out = dict(self.coefficients)
        for key, coef in other.coefficients.items():
            out[key] = out.get(key, 0.0) + sign * coef
        return LinearForm(out)

    def _scaled(self, factor) -> "LinearForm":
        if isinstance(factor, LinearForm):
            raise NotLinear("a product of two terms is not linear; scale terms by numbers only")
        return LinearForm({key: coef * float(factor) for key, coef in self.coefficients.items()})

    def __add__(self, other):
        return self._plus(other, 1.0)

    def __radd__(self, other):
        return LinearForm({})._plus(other, 1.0)  # a number + a form: the constant is refused

    def __sub__(self, other):
        return self._plus(other, -1.0)

    def __rsub__(self, other):
        return LinearForm({})._plus(other, 1.0)

    def __neg__(self):
        return self._scaled(-1.0)

    def __mul__(self, other):
        return self._scaled(other)

    __rmul__ = __mul__

    def __truediv__(self, other):
        if isinstance(other, LinearForm):
            raise NotLinear("dividing by a term is not linear; divide by numbers only")
        return self._scaled(1.0 / other)

    def __rtruediv__(self, other):
        raise NotLinear("dividing by a term is not linear; divide by numbers only")


class _LinearParser(_Parser):
    """The objective grammar, read into a ``LinearForm`` instead of an Objective."""

    def unit(self, spec: str) -> LinearForm:
        spec, batch = re.fullmatch(r"(.+?)(?:@(\d+))?", spec).groups()
        if batch:
            raise NotLinear(f"{spec}@{batch}: a unit is read in every image; @batch has no meaning here")
        layer, *numbers = spec.split(":")
        if len(numbers) not in (1, 2, 3):
            raise NotLinear(f"a term is layer:channel, layer:channel:token or layer:channel:y:x, got {spec!r}")
        values = tuple(int(n) for n in numbers)
        return LinearForm({(layer, values[0], values[1:]): 1.0})


def linear_terms(text: str) -> dict:
    """The terms of a linear expression in the grammar above: {(layer, channel, where): coefficient} in the order
    they first appear (where: () a channel, (token,), (y, x)); terms named twice are summed. A malformed or nonlinear
    expression (a constant, a product or quotient of terms, ``@batch``, a number alone) is a ``UsageError`` /
    ``NotLinear`` with the reason."""
    parser = _LinearParser(text)
    if not parser.tokens:
        raise NotLinear("empty expression; write e.g. 'fc8:130 + 0.5 * fc8:131'")
    value = parser.expr()
    if parser.peek() is not None:
        parser.fail("unexpected")
    if not isinstance(value, LinearForm):
        raise NotLinear("a number alone is not a unit; it needs at least one layer:channel term")
    return value.coefficients
