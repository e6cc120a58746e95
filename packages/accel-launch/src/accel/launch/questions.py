"""Prompts of ``accel config``: plain ``input()`` with defaults, so piped stdin works (no TTY).

An empty answer takes the default shown in brackets; end of input takes the default of every
remaining question (or fails if a question has none). A bad answer is asked again when a
person is typing (stdin is a terminal); from a pipe or a file it raises :class:`BadAnswer`,
since asking again would only consume the next answer meant for another question.

Example:
    >>> import io
    >>> ask = Asker(io.StringIO("2\\n"), io.StringIO())
    >>> ask.choice("Precision?", ["no", "fp16", "bf16"], default=0)
    'bf16'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TextIO, TypeVar

from accel.state.env import str_to_bool

T = TypeVar("T")


class NoAnswer(Exception):
    """Input ended at a question that has no default.

    Example:
        >>> str(NoAnswer("IP address?"))
        'IP address?'
    """


class BadAnswer(Exception):
    """Non-interactive input gave an answer that the question does not accept.

    Example:
        >>> import io
        >>> try:
        ...     Asker(io.StringIO("x\\n"), io.StringIO()).number("How many?")
        ... except BadAnswer as error:
        ...     print(error)
        'How many?' got 'x': please type a whole number >= 0
    """


class Asker:
    """Asks questions on ``out`` and reads answers from ``inp``.

    Example:
        >>> import io
        >>> Asker(io.StringIO("\\n"), io.StringIO()).number("How many?", default=3)
        3
    """

    def __init__(self, inp: TextIO, out: TextIO, retry: bool | None = None) -> None:
        self.inp, self.out = inp, out
        if retry is None:
            isatty = getattr(inp, "isatty", None)
            retry = bool(isatty()) if callable(isatty) else False
        self.retry = retry

    def _read(self, prompt: str) -> str | None:
        self.out.write(prompt)
        self.out.flush()
        line = self.inp.readline()
        if not line:
            self.out.write("\n")
            return None
        return line.strip()

    def _ask(
        self,
        prompt: str,
        convert: Callable[[str], T],
        default: T | None,
        error: str,
        question: str | None = None,
    ) -> T:
        while True:
            answer = self._read(prompt)
            if answer is None:
                if default is None:
                    raise NoAnswer(prompt.strip())
                return default
            if answer == "" and default is not None:
                return default
            try:
                return convert(answer)
            except (ValueError, IndexError, KeyError):
                if not self.retry:
                    asked = question or prompt.strip().rstrip(":")
                    raise BadAnswer(f"{asked!r} got {answer!r}: {error}") from None
                self.out.write(f"  {error}\n")

    def text(self, question: str, default: str | None = None) -> str:
        """A free-text answer.

        Example:
            >>> import io
            >>> Asker(io.StringIO("10.0.0.1\\n"), io.StringIO()).text("IP?")
            '10.0.0.1'
        """
        shown = f" [{default}]" if default is not None else ""

        def convert(value: str) -> str:
            if not value:
                raise ValueError(value)
            return value

        return self._ask(f"{question}{shown}: ", convert, default, "please type a value")

    def number(self, question: str, default: int | None = None, minimum: int = 0) -> int:
        """An integer answer, at least ``minimum``.

        Example:
            >>> import io
            >>> Asker(io.StringIO("x\\n4\\n"), io.StringIO(), retry=True).number("How many?")
            4
        """

        def convert(value: str) -> int:
            number = int(value)
            if number < minimum:
                raise ValueError(value)
            return number

        shown = f" [{default}]" if default is not None else ""
        return self._ask(
            f"{question}{shown}: ", convert, default, f"please type a whole number >= {minimum}"
        )

    def decimal(self, question: str, default: float) -> float:
        """A floating-point answer.

        Example:
            >>> import io
            >>> Asker(io.StringIO("0.5\\n"), io.StringIO()).decimal("Clip?", 1.0)
            0.5
        """
        return self._ask(f"{question} [{default}]: ", float, default, "please type a number")

    def yes_no(self, question: str, default: bool = False) -> bool:
        """A yes/no answer (also y/n, true/false, 1/0).

        Example:
            >>> import io
            >>> Asker(io.StringIO("y\\n"), io.StringIO()).yes_no("Debug?")
            True
        """
        shown = "[YES/no]" if default else "[yes/NO]"
        return self._ask(f"{question} {shown}: ", str_to_bool, default, "please answer yes or no")

    def choice(self, question: str, options: Sequence[Any], default: int = 0) -> Any:
        """One of ``options``, answered by its number or its text.

        Example:
            >>> import io
            >>> Asker(io.StringIO("fp16\\n"), io.StringIO()).choice("Precision?", ["no", "fp16"])
            'fp16'
        """
        lines = [f"{question}"]
        lines += [f"  {i}) {option}" for i, option in enumerate(options)]
        self.out.write("\n".join(lines) + "\n")
        texts = {str(option).lower(): option for option in options}

        def convert(value: str) -> Any:
            if value.lower() in texts:
                return texts[value.lower()]
            return options[int(value)] if int(value) >= 0 else options[len(options)]

        return self._ask(
            f"Choose 0-{len(options) - 1} [{default}]: ",
            convert,
            options[default],
            f"please type a number from 0 to {len(options) - 1}, or an option as listed",
            question,
        )
