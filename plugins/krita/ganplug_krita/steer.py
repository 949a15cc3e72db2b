"""Steer logic without Krita: latest-request-wins scheduling, slider positions -> edits, direction names.

While a slider moves the docker asks the server for one image per position. Only one request is in flight
at a time; a position that arrives meanwhile replaces any position still waiting (it is never queued
behind it), and a response older than the one on the canvas, or made before a reset (Keep, Discard,
another layer), is dropped by its sequence number.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

SLIDER_STEPS = 100  # slider units per standard deviation
SLIDER_RANGE = 3.0  # +- standard deviations a slider reaches
NAME_MAX = 40


@dataclass(frozen=True)
class Ticket:
    seq: int
    payload: object


class LatestWins:
    """One request in flight, at most one waiting (the newest), stale responses dropped.

    Single-threaded by design: call it from the GUI thread only (the worker threads just do HTTP and hand
    their result back to that thread with the ticket's seq).
    """

    def __init__(self):
        self._seq = 0
        self.in_flight: Ticket | None = None
        self.pending: Ticket | None = None
        self.shown = 0  # seq of the response on the canvas
        self.floor = 0  # responses to requests up to this seq are dropped (made before the last reset)
        self.replaced = 0  # waiting requests replaced by a newer one before they were sent
        self.dropped = 0  # responses dropped as stale

    def submit(self, payload) -> Ticket | None:
        """A new request: the ticket to send now, or None when one is in flight (then it waits, replacing
        any older waiting one)."""
        self._seq += 1
        ticket = Ticket(self._seq, payload)
        if self.in_flight is None:
            self.in_flight = ticket
            return ticket
        if self.pending is not None:
            self.replaced += 1
        self.pending = ticket
        return None

    def done(self, seq: int) -> tuple[bool, Ticket | None]:
        """The response to `seq` arrived (or failed): (show it?, the ticket to send next or None)."""
        if self.in_flight is not None and self.in_flight.seq == seq:
            self.in_flight = None
        show = seq > self.shown and seq > self.floor
        if show:
            self.shown = seq
        else:
            self.dropped += 1
        nxt = None
        if self.in_flight is None and self.pending is not None:
            nxt, self.pending = self.pending, None
            self.in_flight = nxt
        return show, nxt

    def reset(self) -> None:
        """Forget the waiting request and drop whatever is in flight when it lands."""
        self.pending = None
        self.floor = self._seq

    @property
    def busy(self) -> bool:
        return self.in_flight is not None or self.pending is not None


def slider_to_amount(position: int) -> float:
    return round(position / SLIDER_STEPS, 4)


def amount_to_slider(amount: float) -> int:
    limit = int(SLIDER_RANGE * SLIDER_STEPS)
    return max(-limit, min(limit, round(amount * SLIDER_STEPS)))


def edits_from_sliders(positions) -> list[dict]:
    """Slider positions (one per direction, index = direction) -> the request's `edits`, rests left out."""
    return [{"direction": d, "amount": slider_to_amount(p)} for d, p in enumerate(positions) if p]


def sliders_from_edits(edits, count: int) -> list[int]:
    """The slider positions that show a layer's edits (edits beyond the sliders are ignored)."""
    pos = [0] * count
    for d, a in edits:
        if 0 <= d < count:
            pos[d] = amount_to_slider(a)
    return pos


def direction_count(model_info: dict | None) -> int | None:
    """How many directions a model has, as GET /v1/models lists it (`directions`; null: no directions file)."""
    count = (model_info or {}).get("directions")
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else None


def server_lists_directions(model_info: dict | None) -> bool:
    """Whether the server says how many directions its models have: one older than this plugin does not
    (its /v1/models has no `directions`), and then Steer asks to update it rather than guess."""
    return isinstance(model_info, dict) and "directions" in model_info


# ---------------------------------------------------------------------- direction names
def clean_name(text: str) -> str:
    return " ".join((text or "").split())[:NAME_MAX]


def default_name(direction: int) -> str:
    return f"direction {direction}"


def names_for(store_json: str, model: str, count: int) -> list[str]:
    """The names the user gave a model's directions (Krita settings JSON {model: {index: name}})."""
    store = load_names(store_json)
    given = store.get(model, {})
    return [given.get(str(d)) or default_name(d) for d in range(count)]


def load_names(store_json: str) -> dict[str, dict[str, str]]:
    try:
        data = json.loads(store_json) if store_json else {}
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    out = {}
    for model, names in data.items():
        if isinstance(names, dict):
            out[str(model)] = {str(k): clean_name(v) for k, v in names.items()
                               if str(k).isdigit() and isinstance(v, str) and clean_name(v)}
    return out


def set_name(store_json: str, model: str, direction: int, name: str) -> str:
    """The store with one direction renamed (an empty name, or the default one, removes the entry)."""
    store = load_names(store_json)
    names = store.setdefault(model, {})
    name = clean_name(name)
    if name and name != default_name(direction):
        names[str(direction)] = name
    else:
        names.pop(str(direction), None)
    if not names:
        store.pop(model)
    return json.dumps(store, sort_keys=True)


def names_to_save(server_names, count: int, direction: int, name: str) -> list[str]:
    """The full list PUT /v1/models/{m}/directions/names takes after renaming one direction: the server's
    names for the others (that endpoint replaces them all), '' for unnamed and for the default name."""
    names = [clean_name(n) if isinstance(n, str) else "" for n in list(server_names or [])[:count]]
    names += [""] * (count - len(names))
    if 0 <= direction < count:
        name = clean_name(name)
        names[direction] = "" if name == default_name(direction) else name
    while names and not names[-1]:
        names.pop()
    return names


def merged_names(server_names, local: list[str], count: int) -> list[str]:
    """One name per slider: the server's (saved beside the run), else the one kept in Krita's settings (a
    server that could not save it), else `direction K`."""
    server = list(server_names or [])
    out = []
    for d in range(count):
        given = clean_name(server[d]) if d < len(server) and isinstance(server[d], str) else ""
        out.append(given or (local[d] if d < len(local) else default_name(d)))
    return out
