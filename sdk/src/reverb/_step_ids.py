"""Step ids: the user's strings, with the n-th repeat (n >= 1) in a run suffixed ":n"."""


class StepIds:
    """Hands out the step ids of one run, in call order (which replays repeat exactly)."""

    def __init__(self) -> None:
        self._repeats: dict[str, int] = {}
        self._taken: set[str] = set()

    @property
    def taken(self) -> set[str]:
        """Every id handed out so far (do not change it)."""
        return self._taken

    def claim(self, name: str) -> str:
        """The id of the next step the user called `name`: "send", then "send:1", ...

        `name` is a non-empty string (`Step` checks it)."""
        repeat = self._repeats.get(name, 0)
        step_id = name if repeat == 0 else f"{name}:{repeat}"
        while step_id in self._taken:  # the user also wrote an id such as "send:1"
            repeat += 1
            step_id = f"{name}:{repeat}"
        self._repeats[name] = repeat + 1
        self._taken.add(step_id)
        return step_id
