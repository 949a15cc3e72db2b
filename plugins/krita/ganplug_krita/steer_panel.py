"""The Steer panel: one slider per latent direction, a live preview of the active ganplug layer, Keep.

Moving a slider asks the server for the layer's image with the sliders' edits (POST /v1/generate, in a
worker thread so Krita never waits on the network) and paints it into a preview layer right above the
layer. The scheduling is steer.LatestWins: one request in flight, the newest position waiting, stale
answers dropped. Keep turns the preview into a generated layer recorded with its edits; Discard removes it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

from krita import Krita
from PyQt5.QtCore import QObject, Qt, pyqtSignal
from PyQt5.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton, QSlider, QVBoxLayout, QWidget

from . import document, provenance, steer
from . import ganplug_client as client

MAX_SLIDERS = 8
NAMES_GROUP, NAMES_KEY = "ganplug", "direction_names"


class _Relay(QObject):
    """Carries a worker thread's answer to the GUI thread (a queued signal: emitted off the GUI thread)."""

    landed = pyqtSignal(int, object, str)  # seq, BGRA bytes or None, error sentence


class SteerPanel(QWidget):
    # seq of the request whose pixels were just set on the canvas, and time.perf_counter() right after
    shown = pyqtSignal(int, float)

    def __init__(self, api, models, say, parent=None):
        """`api()` -> Client, `models()` -> the server's model list, `say(text)` shows a status line."""
        super().__init__(parent)
        self.api, self.models, self.say = api, models, say
        self.sched = steer.LatestWins()
        self.session: dict | None = None  # doc, source, preview, prov, rect, model
        self.tickets: dict[int, steer.Ticket] = {}
        self.shown_edits: list[dict] | None = None
        self.counts: dict[str, int | None] = {}
        self.relay = _Relay()
        self.relay.landed.connect(self._landed)
        grid = QGridLayout()
        self.rows = []
        limit = int(steer.SLIDER_RANGE * steer.SLIDER_STEPS)
        for d in range(MAX_SLIDERS):
            name = QLineEdit(steer.default_name(d))
            name.setToolTip("Name this direction (saved for this model)")
            name.editingFinished.connect(lambda d=d: self._renamed(d))
            slider = QSlider(Qt.Horizontal)
            slider.setRange(-limit, limit)
            slider.valueChanged.connect(self._moved)
            value = QLabel("0.00")
            grid.addWidget(name, d, 0)
            grid.addWidget(slider, d, 1)
            grid.addWidget(value, d, 2)
            self.rows.append((name, slider, value))
        self.steer_button = QPushButton("Steer active layer")
        self.steer_button.setToolTip("Show sliders for the active ganplug layer's model")
        self.steer_button.clicked.connect(lambda: self.bind())
        self.keep_button = QPushButton("Keep")
        self.keep_button.clicked.connect(self.keep)
        self.discard_button = QPushButton("Discard")
        self.discard_button.clicked.connect(self.discard)
        buttons = QHBoxLayout()
        buttons.addWidget(self.steer_button)
        buttons.addWidget(self.keep_button)
        buttons.addWidget(self.discard_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Steer (standard deviations along each direction)"))
        layout.addLayout(grid)
        layout.addLayout(buttons)
        self._show_rows(0)

    # ------------------------------------------------------------------ binding to a layer
    def _show_rows(self, count: int) -> None:
        for d, (name, slider, value) in enumerate(self.rows):
            for w in (name, slider, value):
                w.setVisible(d < count)
        self.keep_button.setEnabled(self.session is not None)
        self.discard_button.setEnabled(self.session is not None)

    def direction_count(self, model: str) -> int | None:
        """How many directions the server lists for the model (GET /v1/models); None when it has no directions
        file. A server too old to list them is refused with a sentence (ServerError), not probed."""
        if model in self.counts:
            return self.counts[model]
        info = next((m for m in self.models() if m.get("name") == model), None)
        if info is None:
            raise client.ServerError(f"the server has no model {model!r} (the layer's model); start it with that "
                                     "run folder in --models.")
        if not steer.server_lists_directions(info):
            raise client.ServerError("this ganplug server is older than the plugin (its model list does not say "
                                     "how many directions each model has); update ganplug and restart "
                                     "`ganplug serve`.")
        self.counts[model] = steer.direction_count(info)
        return self.counts[model]

    def bind(self, doc=None, node=None) -> bool:
        """Steer `node` (else the active layer): sliders set to its edits, names to the model's."""
        if self.session is not None:
            self.discard()
        doc = doc or Krita.instance().activeDocument()
        if doc is None:
            self.say("open a document and select a layer made by ganplug to steer it.")
            return False
        node, prov = document.active_provenance(doc, node)
        if prov is None:
            self.say("select a layer made by ganplug first: Steer moves its latent.")
            return False
        if prov.kind == "project" and prov.latent is None:
            self.say(provenance.NO_LATENT)
            return False
        try:
            count = self.direction_count(prov.model)
        except client.ServerError as e:
            self.say(str(e))
            return False
        if not count:
            self.say(f"model {prov.model!r} has no directions: run `ganplug directions RUN` on its run folder.")
            return False
        shown = min(count, MAX_SLIDERS)
        names = self._names(prov.model, shown)
        positions = steer.sliders_from_edits(prov.edits, shown)
        for d, (name, slider, value) in enumerate(self.rows[:shown]):
            name.setText(names[d])
            slider.blockSignals(True)
            slider.setValue(positions[d])
            slider.blockSignals(False)
            value.setText(f"{steer.slider_to_amount(positions[d]):+.2f}")
        self.sched.reset()
        self.session = {"doc": doc, "source": node, "preview": None, "prov": prov, "model": prov.model,
                        "rect": document.target_rect(doc), "count": shown}
        self.shown_edits = None
        self._show_rows(shown)
        self.say(f"steering {node.name()}: {count} direction(s).")
        return True

    def positions(self) -> list[int]:
        count = self.session["count"] if self.session else 0
        return [slider.value() for _, slider, _ in self.rows[:count]]

    # ------------------------------------------------------------------ names
    def _names(self, model: str, count: int) -> list[str]:
        """The names saved beside the run (GET .../directions), else those Krita keeps for a name the server
        could not save (or when it cannot be asked)."""
        local = steer.names_for(Krita.instance().readSetting(NAMES_GROUP, NAMES_KEY, ""), model, count)
        try:
            return steer.merged_names(self.api().directions(model).get("names"), local, count)
        except client.ServerError:
            return local

    def _renamed(self, direction: int) -> None:
        """Save one direction's name beside the run (PUT .../directions/names, all names: it replaces them);
        when the server cannot save it, Krita's settings keep it."""
        if self.session is None:
            return
        model, text = self.session["model"], self.rows[direction][0].text()
        app = Krita.instance()
        store = app.readSetting(NAMES_GROUP, NAMES_KEY, "")
        try:
            api = self.api()
            info = api.directions(model)
            api.save_direction_names(model, steer.names_to_save(info.get("names"), int(info.get("count", 0)),
                                                                direction, text))
            store = steer.set_name(store, model, direction, "")  # saved with the run: no copy in Krita
        except (client.ServerError, TypeError, ValueError) as e:
            store = steer.set_name(store, model, direction, text)
            self.say(f"the server did not save the name ({e}); Krita keeps it.")
        app.writeSetting(NAMES_GROUP, NAMES_KEY, store)

    # ------------------------------------------------------------------ moving
    def _moved(self, _value=None) -> None:
        s = self.session
        if s is not None:
            active = s["doc"].activeNode()
            if Krita.instance().activeDocument() not in (None, s["doc"]) or (
                    active is not None and document.uid_of(active) not in
                    {document.uid_of(n) for n in (s["source"], s["preview"]) if n is not None}):
                self.discard()  # the user went to another layer: steer that one
                s = None
        if s is None and not self.bind():
            return
        s = self.session
        positions = self.positions()
        for (_, _, value), p in zip(self.rows, positions, strict=False):
            value.setText(f"{steer.slider_to_amount(p):+.2f}")
        edits = steer.edits_from_sliders(positions)
        try:
            _, req, _ = provenance.regenerate_plan(s["prov"].with_edits(
                [(e["direction"], e["amount"]) for e in edits]), s["rect"][2], s["rect"][3])
        except ValueError as e:
            self.say(str(e))
            return
        ticket = self.sched.submit({"request": req, "edits": edits, "size": s["rect"][2:], "t": time.perf_counter()})
        if ticket is not None:
            self._send(ticket)

    def _send(self, ticket: steer.Ticket) -> None:
        self.tickets[ticket.seq] = ticket
        api, (w, h) = self.api(), ticket.payload["size"]

        def work():
            bgra, error = None, ""
            try:
                result = api.call("generate", ticket.payload["request"])
                bgra = document.bgra_of_png(client.image_bytes(result["images"][0]), w, h)
            except client.ServerError as e:
                error = str(e)
            except Exception as e:  # never let a worker die silently: the scheduler waits for its answer
                error = f"steer request failed: {e}"
            self.relay.landed.emit(ticket.seq, bgra, error)

        threading.Thread(target=work, name=f"ganplug-steer-{ticket.seq}", daemon=True).start()

    def _landed(self, seq: int, bgra, error: str) -> None:
        ticket = self.tickets.pop(seq, None)
        show, nxt = self.sched.done(seq)
        if nxt is not None:
            self._send(nxt)
        if error:
            self.say(error)
            return
        s = self.session
        if not show or s is None or bgra is None or ticket is None:
            return
        if s["preview"] is None:
            s["preview"] = document.make_preview(s["doc"], s["source"])
        document.show_preview(s["doc"], s["preview"], bgra, s["rect"])
        self.shown_edits = ticket.payload["edits"]
        self.shown.emit(seq, time.perf_counter())

    # ------------------------------------------------------------------ committing
    def keep(self):
        """The preview on the canvas becomes a layer recorded with its edits; returns it (None if nothing)."""
        s = self.session
        if s is None or s["preview"] is None or self.shown_edits is None:
            self.say("move a slider first: Keep commits the preview.")
            return None
        prov = s["prov"].with_edits([(e["direction"], e["amount"]) for e in self.shown_edits])
        prov = replace(prov, width=s["rect"][2], height=s["rect"][3])
        document.keep_preview(s["doc"], s["preview"], prov)
        self.sched.reset()
        self.session = None
        self.bind(s["doc"], s["preview"])  # go on steering from the kept layer
        self.say(f"kept {prov.layer_name()}.")
        return s["preview"]

    def discard(self) -> None:
        s = self.session
        self.sched.reset()
        self.session = None
        if s is not None and s["preview"] is not None:
            s["preview"].remove()
            s["doc"].refreshProjection()
        self._show_rows(0)
