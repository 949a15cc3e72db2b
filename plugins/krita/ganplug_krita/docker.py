"""The "ganplug" docker: widgets only. Jobs are polled with a QTimer so Krita never freezes."""

from __future__ import annotations

from krita import DockWidget, Krita
from PyQt5.QtCore import QTimer
from PyQt5.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from . import document, provenance, state
from . import ganplug_client as client
from .steer_panel import SteerPanel

SETTINGS_GROUP, SETTINGS_KEY = "ganplug", "settings"


class GanplugDocker(DockWidget):
    def __init__(self):
        super().__init__()
        self.setWindowTitle("ganplug")
        self.settings = state.Settings.from_json(Krita.instance().readSetting(SETTINGS_GROUP, SETTINGS_KEY, ""))
        self.models: list = []
        self.job = None  # (job id, what to do with the result)
        self.timer = QTimer(self)
        self.timer.setInterval(150)
        self.timer.timeout.connect(self._poll)
        self._build()
        self._refresh_models()

    # ------------------------------------------------------------------ layout
    def _build(self):
        s = self.settings
        root = QWidget(self)
        form = QFormLayout()
        self.url = QLineEdit(s.server_url)
        self.url.editingFinished.connect(self._refresh_models)
        self.model = QComboBox()
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(min(s.seed, 2**31 - 1))
        dice = QPushButton("Random")
        dice.setToolTip("New random seed")
        dice.clicked.connect(lambda: self.seed.setValue(state.roll_seed() % 2**31))
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed)
        seed_row.addWidget(dice)
        self.count = QSpinBox()
        self.count.setRange(1, 64)
        self.count.setValue(s.count)
        self.truncation = QDoubleSpinBox()
        self.truncation.setRange(0.0, 2.0)
        self.truncation.setSingleStep(0.05)
        self.truncation.setValue(s.truncation)
        self.tileable = QCheckBox("Tileable")
        self.tileable.setChecked(s.tileable)
        self.seed_b = QSpinBox()
        self.seed_b.setRange(0, 2**31 - 1)
        self.seed_b.setValue(1)
        form.addRow("Server", self.url)
        form.addRow("Model", self.model)
        form.addRow("Seed", seed_row)
        form.addRow("Count", self.count)
        form.addRow("Truncation", self.truncation)
        form.addRow("", self.tileable)
        form.addRow("Morph to seed", self.seed_b)
        self.steps = QSpinBox()
        self.steps.setRange(1, 5000)
        self.steps.setValue(s.project_steps)
        self.steps.setToolTip("Find in model: optimisation steps of the projection")
        form.addRow("Find steps", self.steps)
        buttons = QHBoxLayout()
        for label, slot in (("Generate", self.on_generate), ("Regenerate", self.on_regenerate),
                            ("Variations", self.on_variations), ("Morph", self.on_morph),
                            ("Translate", self.on_translate), ("Find in model", self.on_find)):
            b = QPushButton(label)
            b.clicked.connect(slot)
            buttons.addWidget(b)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.on_cancel)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress)
        progress_row.addWidget(self.cancel_button)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout = QVBoxLayout(root)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addLayout(progress_row)
        layout.addWidget(self.status)
        self.steer = SteerPanel(self._api, lambda: self.models, self._say, root)
        layout.addWidget(self.steer)
        layout.addStretch(1)
        self.setWidget(root)

    def canvasChanged(self, canvas):  # required by DockWidget
        pass

    # ------------------------------------------------------------------ state
    def _read(self) -> state.Settings:
        self.settings = state.Settings(
            server_url=self.url.text().strip(), token=self.settings.token, model=self.model.currentText(),
            seed=self.seed.value(), count=self.count.value(), truncation=self.truncation.value(),
            tileable=self.tileable.isChecked(), strength=self.settings.strength, frames=self.settings.frames,
            project_steps=self.steps.value(),
        ).clamped()
        Krita.instance().writeSetting(SETTINGS_GROUP, SETTINGS_KEY, self.settings.to_json())
        return self.settings

    def _api(self) -> client.Client:
        return client.Client(self.settings.server_url, self.settings.token or None)

    def _say(self, text: str):
        self.status.setText(text)

    def _refresh_models(self):
        self._read()
        try:
            self.models = self._api().models()
        except client.ServerError as e:
            self._say(str(e))
            return
        current = self.settings.model
        self.model.clear()
        self.model.addItems([m["name"] for m in self.models])
        if current:
            self.model.setCurrentText(current)
        self._say(f"{len(self.models)} model(s) on the server.")

    # ------------------------------------------------------------------ jobs
    def _start(self, kind: str, request: dict, rect, above=None, base_seed=None, recipes=None, pick=None,
               doc=None):
        if self.job is not None:
            self._say("a job is already running; cancel it or wait.")
            return
        doc = doc or document.active_or_new_document()
        try:
            job = self._api().submit(kind, request)
        except client.ServerError as e:
            self._say(str(e))
            return
        self.job = (job["id"], doc, rect, above, base_seed, recipes, pick)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self._say(f"{kind}: queued")
        self.timer.start()

    def _poll(self):
        if self.job is None:
            self.timer.stop()
            return
        job_id, doc, rect, above, base_seed, recipes, pick = self.job
        try:
            info = self._api().job(job_id)
            self.progress.setValue(int(1000 * info.get("progress", 0.0)))
            self._say(info.get("message", ""))
            if info["state"] not in client.TERMINAL:
                return
            result = client.job_result(info)
            nodes = document.insert_result(doc, result, rect, above=above, base_seed=base_seed, recipes=recipes,
                                           pick=pick)
            self._say(f"added {len(nodes)} layer(s).")
            if result.get("kind") == "project" and "latent" in result.get("params", {}):
                loss = result.get("params", {}).get("loss")
                self._say(f"found it{f' (loss {loss:.4f})' if isinstance(loss, float) else ''}: Regenerate, "
                          "Variations and Steer work on the found layer.")
        except client.ServerError as e:
            self._say(str(e))
        self._finish()

    def _finish(self):
        self.timer.stop()
        self.job = None
        self.cancel_button.setEnabled(False)

    def on_cancel(self):
        if self.job is not None:
            try:
                self._api().cancel(self.job[0])
            except client.ServerError as e:
                self._say(str(e))
            self._finish()
            self.progress.setValue(0)
            self._say("cancelled.")

    # ------------------------------------------------------------------ buttons
    def on_generate(self):
        s = self._read()
        doc = document.active_or_new_document()
        rect = document.target_rect(doc)
        self._start("generate", state.generate_request(s, rect[2], rect[3]), rect, above=doc.activeNode())

    def _made(self):
        """The active layer and what made it (sidecar, else name); says why not when it is no ganplug layer."""
        doc = Krita.instance().activeDocument()
        node, prov = document.active_provenance(doc) if doc is not None else (None, None)
        if prov is None:
            self._say("select a layer made by ganplug first (the document records what made it).")
        return doc, node, prov

    def on_regenerate(self):
        doc, node, prov = self._made()
        if prov is not None:
            rect = document.target_rect(doc)
            try:
                kind, req, pick = provenance.regenerate_plan(prov, rect[2], rect[3])
            except ValueError as e:
                self._say(str(e))
                return
            self._start(kind, req, rect, above=node, recipes=[prov], pick=pick, doc=doc)

    def on_variations(self):
        s = self._read()
        doc, node, prov = self._made()
        if prov is not None:
            rect = document.target_rect(doc)
            try:
                req = provenance.variations_plan(prov, s.count, s.strength, rect[2], rect[3])
            except ValueError as e:
                self._say(str(e))
                return
            self._start("variations", req, rect, above=node, doc=doc)

    def on_find(self):
        """Find the active layer (inside the selection, if any) in the model: a projection job."""
        s = self._read()
        doc = Krita.instance().activeDocument()
        node = doc.activeNode() if doc is not None else None
        if node is None:
            self._say("open a document and select the layer (a sketch or a photo) to find in the model.")
            return
        refusal = document.projection_refusal(self.models, s.model)
        if refusal:
            self._say(refusal)
            return
        rect = document.target_rect(doc)
        req = state.project_request(s, document.layer_png_b64(doc, node, rect), rect[2], rect[3])
        self._start("project", req, rect, above=node, base_seed=s.seed, doc=doc)

    def on_morph(self):
        s = self._read()
        doc = document.active_or_new_document()
        rect = document.target_rect(doc)
        req = state.morph_request(s, s.seed, self.seed_b.value(), rect[2], rect[3])
        self._start("interpolate", req, rect, above=doc.activeNode(), base_seed=s.seed)

    def on_translate(self):
        s = self._read()
        doc = Krita.instance().activeDocument()
        node = doc.activeNode() if doc is not None else None
        if node is None:
            self._say("open a document and select the layer to translate.")
            return
        if not state.model_supports(self.models, s.model, "translate"):
            self._say(f"model {s.model!r} does not translate images; pick a pix2pix model.")
            return
        rect = document.target_rect(doc)
        req = state.translate_request(s, document.layer_png_b64(doc, node, rect), rect[2], rect[3])
        self._start("translate", req, rect, above=node, doc=doc)
