"""The catalogue of the engine's own error types (`reverb.engine_errors`)."""

import re

from reverb import engine_errors
from reverb.engine_errors import CATALOGUE, ErrorType


def test_every_entry_is_catalogued_once_by_its_name() -> None:
    entries = [value for value in vars(engine_errors).values() if isinstance(value, ErrorType)]
    assert len({entry.name for entry in entries}) == len(entries)
    assert sorted(CATALOGUE) == sorted(entry.name for entry in entries)
    assert all(CATALOGUE[entry.name] is entry for entry in entries)


def test_the_docstring_draws_the_catalogue_as_it_is() -> None:
    drawn = dict(re.findall(r"(\w+) \((yes|no)\):", engine_errors.__doc__ or ""))
    assert drawn == {name: "yes" if entry.retriable else "no" for name, entry in CATALOGUE.items()}


def test_the_public_names_are_pinned() -> None:
    assert engine_errors.__all__ == sorted(engine_errors.__all__)
    assert set(engine_errors.__all__) == {
        name
        for name, value in vars(engine_errors).items()
        if isinstance(value, ErrorType) or name in ("CATALOGUE", "ErrorType")
    }


def test_users_see_the_names_they_know() -> None:
    # These names are what `GET /runs/{id}` shows in `error.type`: renaming one breaks users.
    assert sorted(CATALOGUE) == [
        "EngineError",
        "Error",
        "FunctionNotFound",
        "FunctionRemoved",
        "FunctionTimeout",
        "HostError",
        "InvalidOutput",
        "InvalidPayload",
        "InvalidWait",
        "InvocationTimeout",
        "InvokeTimeout",
        "NotSupported",
        "OutputTooLarge",
        "OutputUnserializableError",
        "ProtocolError",
        "RunCancelled",
        "RunSkipped",
        "StartTooLarge",
        "StepError",
        "StepFailed",
        "StepTimeout",
        "Unauthenticated",
    ]
