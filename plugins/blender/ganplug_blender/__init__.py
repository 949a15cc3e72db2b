"""ganplug for Blender: textures from a running `ganplug serve`, wired into the active material.

Panels: Properties editor > Material tab, and Shader editor > sidebar > ganplug. Operators:
`ganplug.generate` (active object) and `ganplug.populate` (one texture per selected object, consecutive
seeds). Called from the UI they run as modal operators with a progress bar (Esc or Cancel stops the
job on the server); called from a script (`bpy.ops.ganplug.generate()`) they block until done.
"""

bl_info = {
    "name": "ganplug",
    "author": "ganplug",
    "version": (0, 1, 0),
    "blender": (3, 4, 0),
    "location": "Properties > Material > ganplug; Shader Editor > Sidebar > ganplug",
    "description": "Generate textures with your own ganplug GAN models (needs `ganplug serve` running)",
    "category": "Material",
}

import bpy  # noqa: E402

from . import ganplug_client as client  # noqa: E402
from . import material, state  # noqa: E402


class GanplugSettings(bpy.types.PropertyGroup):
    server_url: bpy.props.StringProperty(name="Server", default=client.DEFAULT_URL)
    token: bpy.props.StringProperty(name="Token", default="", subtype="PASSWORD")
    model: bpy.props.StringProperty(name="Model", default="", description="Empty = the server's first model")
    seed: bpy.props.IntProperty(name="Seed", default=0, min=0)
    size: bpy.props.IntProperty(name="Size", default=512, min=8, max=4096)
    tileable: bpy.props.BoolProperty(name="Tileable", default=True)
    truncation: bpy.props.FloatProperty(name="Truncation", default=0.7, min=0.0, max=2.0)
    progress: bpy.props.FloatProperty(name="Progress", default=0.0, min=0.0, max=100.0, subtype="PERCENTAGE")
    status: bpy.props.StringProperty(name="Status", default="")
    cancel_requested: bpy.props.BoolProperty(default=False)
    busy: bpy.props.BoolProperty(default=False)


def _settings(context):
    return context.scene.ganplug


def _api(s):
    return client.Client(s.server_url, s.token or None)


def _targets(context, populate):
    if populate:
        objs = [o for o in context.selected_objects if o.type in {"MESH", "CURVE", "SURFACE", "META", "FONT"}]
        plan = state.populate_plan([o.name for o in objs], _settings(context).seed)
    else:
        obj = context.active_object
        plan = [(obj.name, _settings(context).seed)] if obj is not None else []
    return plan


def _apply(context, result, plan, populate):
    s = _settings(context)
    images = result["images"]
    by_seed = {img["seed"]: img for img in images}
    for name, seed in plan:
        obj = bpy.data.objects[name]
        img_data = by_seed[seed]
        img = material.image_from_png(client.image_bytes(img_data), state.image_name(result["model"], seed, s.tileable),
                                      seed, result["model"], s.tileable)
        mat = material.material_for(obj, own=populate, name=state.material_name(obj.name))
        material.wire_base_color(mat, img)
    return len(plan)


class _GenerateBase:
    populate = False
    _timer = None
    _job = None
    _plan = None

    @classmethod
    def poll(cls, context):
        return context.scene is not None

    def _request(self, context):
        s = _settings(context)
        self._plan = _targets(context, self.populate)
        if not self._plan:
            raise client.ServerError("select a mesh object first.")
        return state.texture_request(s.model, [seed for _, seed in self._plan], s.size, s.tileable, s.truncation)

    def execute(self, context):  # scripts and background mode: block until done
        s = _settings(context)
        try:
            result = _api(s).run("generate", self._request(context))
            n = _apply(context, result, self._plan, self.populate)
        except (client.ServerError, ValueError) as e:
            s.status = str(e)
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        s.status = f"textured {n} object(s)."
        self.report({"INFO"}, s.status)
        return {"FINISHED"}

    def invoke(self, context, event):  # the UI: a modal operator polling the job
        s = _settings(context)
        try:
            self._job = _api(s).submit("generate", self._request(context))
        except client.ServerError as e:
            s.status = str(e)
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        s.cancel_requested, s.busy, s.progress, s.status = False, True, 0.0, "queued"
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.2, window=context.window)
        wm.progress_begin(0, 100)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        s = _settings(context)
        if event.type == "ESC" or s.cancel_requested:
            try:
                _api(s).cancel(self._job["id"])
            except client.ServerError:
                pass
            return self._end(context, "cancelled.", {"CANCELLED"})
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        try:
            self._job = _api(s).job(self._job["id"])
            s.progress = 100.0 * self._job.get("progress", 0.0)
            s.status = self._job.get("message", "")
            context.window_manager.progress_update(s.progress)
            for area in context.screen.areas if context.screen else []:
                area.tag_redraw()
            if self._job["state"] not in client.TERMINAL:
                return {"RUNNING_MODAL"}
            n = _apply(context, client.job_result(self._job), self._plan, self.populate)
        except (client.ServerError, ValueError) as e:
            self.report({"ERROR"}, str(e))
            return self._end(context, str(e), {"CANCELLED"})
        return self._end(context, f"textured {n} object(s).", {"FINISHED"})

    def _end(self, context, message, result):
        s = _settings(context)
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
        wm.progress_end()
        s.busy, s.cancel_requested, s.status = False, False, message
        return result


class GANPLUG_OT_generate(_GenerateBase, bpy.types.Operator):
    """Generate a texture for the active object's material (Base Color)"""

    bl_idname = "ganplug.generate"
    bl_label = "Generate texture"
    bl_options = {"REGISTER", "UNDO"}


class GANPLUG_OT_populate(_GenerateBase, bpy.types.Operator):
    """One texture per selected object, with consecutive seeds (e.g. a set of armour pieces)"""

    bl_idname = "ganplug.populate"
    bl_label = "Populate selected"
    bl_options = {"REGISTER", "UNDO"}
    populate = True


class GANPLUG_OT_cancel(bpy.types.Operator):
    """Cancel the running ganplug job"""

    bl_idname = "ganplug.cancel"
    bl_label = "Cancel"

    def execute(self, context):
        _settings(context).cancel_requested = True
        return {"FINISHED"}


class GANPLUG_OT_random_seed(bpy.types.Operator):
    """Pick a random seed"""

    bl_idname = "ganplug.random_seed"
    bl_label = "Random seed"

    def execute(self, context):
        import random

        _settings(context).seed = random.randint(0, 2**31 - 1)
        return {"FINISHED"}


class GANPLUG_OT_models(bpy.types.Operator):
    """Ask the server which models it has (and pick the first if none is set)"""

    bl_idname = "ganplug.models"
    bl_label = "List models"

    def execute(self, context):
        s = _settings(context)
        try:
            names = [m["name"] for m in _api(s).models()]
        except client.ServerError as e:
            s.status = str(e)
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        if names and not s.model:
            s.model = names[0]
        s.status = "models: " + (", ".join(names) or "none")
        self.report({"INFO"}, s.status)
        return {"FINISHED"}


def _draw(layout, context):
    s = _settings(context)
    col = layout.column(align=True)
    col.prop(s, "server_url")
    row = col.row(align=True)
    row.prop(s, "model")
    row.operator("ganplug.models", text="", icon="FILE_REFRESH")
    row = col.row(align=True)
    row.prop(s, "seed")
    row.operator("ganplug.random_seed", text="", icon="FILE_REFRESH")
    col.prop(s, "size")
    col.prop(s, "truncation")
    col.prop(s, "tileable")
    row = layout.row(align=True)
    row.enabled = not s.busy
    row.operator("ganplug.generate", icon="TEXTURE")
    row.operator("ganplug.populate", icon="OUTLINER_OB_GROUP_INSTANCE")
    if s.busy:
        row = layout.row(align=True)
        row.prop(s, "progress", slider=True)
        row.operator("ganplug.cancel", text="", icon="CANCEL")
    if s.status:
        layout.label(text=s.status)


class GANPLUG_PT_material(bpy.types.Panel):
    bl_label = "ganplug"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "material"

    def draw(self, context):
        _draw(self.layout, context)


class GANPLUG_PT_shader(bpy.types.Panel):
    bl_label = "ganplug"
    bl_space_type = "NODE_EDITOR"
    bl_region_type = "UI"
    bl_category = "ganplug"

    @classmethod
    def poll(cls, context):
        return getattr(context.space_data, "tree_type", "") == "ShaderNodeTree"

    def draw(self, context):
        _draw(self.layout, context)


CLASSES = (GanplugSettings, GANPLUG_OT_generate, GANPLUG_OT_populate, GANPLUG_OT_cancel, GANPLUG_OT_random_seed,
           GANPLUG_OT_models, GANPLUG_PT_material, GANPLUG_PT_shader)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.ganplug = bpy.props.PointerProperty(type=GanplugSettings)


def unregister():
    del bpy.types.Scene.ganplug
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
