"""ganplug for Blender: textures from a running `ganplug serve`, wired into the objects' materials.

Panels: Properties editor > Material tab, and Shader editor > sidebar > ganplug. Operators:
`ganplug.generate` (active object), `ganplug.populate` (each selected object its own variation: consecutive
seeds, or one seed swept along a latent direction) and `ganplug.regenerate` (each selected object redone
from the recipe kept in its `ganplug_*` custom properties). Each texture comes with a normal map and a
roughness map derived from it (maps.py) and wired into the Principled BSDF (material.py). Called from the
UI they run as modal operators with a progress bar (Esc or Cancel stops the job on the server); called from
a script (`bpy.ops.ganplug.populate()`) they block until done.
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

from dataclasses import replace  # noqa: E402

import bpy  # noqa: E402

from . import ganplug_client as client  # noqa: E402
from . import maps, material, state  # noqa: E402

TEXTURABLE = {"MESH", "CURVE", "SURFACE", "META", "FONT"}


class GanplugSettings(bpy.types.PropertyGroup):
    server_url: bpy.props.StringProperty(name="Server", default=client.DEFAULT_URL)
    token: bpy.props.StringProperty(name="Token", default="", subtype="PASSWORD")
    model: bpy.props.StringProperty(name="Model", default="", description="Empty = the server's first model")
    seed: bpy.props.IntProperty(name="Seed", default=0, min=0)
    size: bpy.props.IntProperty(name="Resolution", default=512, min=8, max=4096,
                                description="Side of the square texture in pixels")
    tileable: bpy.props.BoolProperty(name="Tileable", default=True,
                                     description="Seamless: opposite edges continue each other (maps too)")
    truncation: bpy.props.FloatProperty(name="Truncation", default=0.7, min=0.0, max=2.0)
    strength: bpy.props.FloatProperty(name="Normal strength", default=4.0, min=0.0, max=100.0,
                                      description="Normal map relief: multiplies the per-pixel luminance slopes")
    invert: bpy.props.BoolProperty(name="Invert height", default=False,
                                   description="Dark areas are raised instead of bright ones")
    mapping: bpy.props.EnumProperty(name="Mapping", default="UV", items=(
        ("UV", "UV", "The object's UV map"),
        ("BOX", "Box", "Object-space box projection, for meshes without good UVs")))
    variation: bpy.props.EnumProperty(name="Variation", default="SEEDS", items=(
        ("SEEDS", "Seeds", "Populate: consecutive seeds from Seed, one per object"),
        ("DIRECTION", "Direction", "Populate: Seed moved along one latent direction (needs a directions file)")))
    direction: bpy.props.IntProperty(name="Direction", default=0, min=0, max=511,
                                     description="Latent direction index (`ganplug directions`); 0 spreads most")
    sweep: bpy.props.FloatProperty(name="Sweep", default=3.0, min=0.0, max=100.0,
                                   description="Populate sweeps the direction from -Sweep to +Sweep std devs")
    progress: bpy.props.FloatProperty(name="Progress", default=0.0, min=0.0, max=100.0, subtype="PERCENTAGE")
    status: bpy.props.StringProperty(name="Status", default="")
    cancel_requested: bpy.props.BoolProperty(default=False)
    busy: bpy.props.BoolProperty(default=False)


def _settings(context):
    return context.scene.ganplug


def _api(s):
    return client.Client(s.server_url, s.token or None)


def _base_recipe(s) -> state.Recipe:
    return state.Recipe(model=s.model, seed=s.seed, size=s.size, tileable=s.tileable, truncation=s.truncation,
                        mapping=s.mapping, strength=s.strength, invert=s.invert)


def _texture(obj, recipe: state.Recipe, model: str, png: bytes, own: bool) -> None:
    """One object: base colour, normal and roughness images, its material wired, its recipe recorded."""
    recipe = replace(recipe, model=model)
    base = material.image_from_png(png, state.image_name(model, recipe.seed, recipe.tileable, recipe.edits),
                                   recipe.seed, model, recipe.tileable)
    width, height = base.size
    normal_px, rough_px = maps.derive(material.read_pixels(base), width, height, base.channels,
                                      strength=recipe.strength, invert=recipe.invert, wrap=recipe.tileable)
    normal = material.image_from_pixels(base.name + " normal", width, height, normal_px)
    rough = material.image_from_pixels(base.name + " roughness", width, height, rough_px)
    mat = material.material_for(obj, own=own, name=state.material_name(obj.name))
    material.wire_maps(mat, base, normal, rough, recipe.mapping, alpha=state.png_has_alpha(png))
    for key, value in recipe.to_props().items():
        obj[key] = value


def _apply(result, entries, own: bool) -> int:
    """Texture the objects one finished request was for; objects deleted meanwhile are skipped."""
    by_seed = {img["seed"]: img for img in result["images"]}
    done = 0
    for name, recipe in entries:
        obj = bpy.data.objects.get(name)
        if obj is None:
            continue
        if recipe.seed not in by_seed:
            raise client.ServerError(f"the server sent no image for seed {recipe.seed}.")
        _texture(obj, recipe, result["model"], client.image_bytes(by_seed[recipe.seed]), own)
        done += 1
    return done


class _GenerateBase:
    own = False  # give each object its own material (else the active material is changed in place)
    _timer = None
    _job = None
    _tasks = None
    _done = 0
    _count = 0
    _skipped = ()

    @classmethod
    def poll(cls, context):
        return context.scene is not None

    def plan(self, context) -> list[tuple[str, state.Recipe]]:
        """(object name, recipe) for each object the operator textures: Generate, Populate and Regenerate
        each define their own; this base class is never registered as an operator."""
        raise TypeError(f"{type(self).__name__} does not say which objects to texture (define plan())")

    def _prepare(self, context):
        self._skipped = []
        plan = self.plan(context)
        self._tasks = state.batch_requests(plan)
        self._done = self._count = 0

    def _finish_message(self):
        msg = f"textured {self._count} object(s)."
        if self._skipped:
            msg += " Skipped: " + " ".join(self._skipped)
        return msg

    def execute(self, context):  # scripts and background mode: block until done
        s = _settings(context)
        try:
            self._prepare(context)
            api = _api(s)
            for request, entries in self._tasks:
                self._count += _apply(api.run("generate", request), entries, self.own)
                self._done += 1
        except (client.ServerError, ValueError) as e:
            s.status = str(e)
            self.report({"ERROR"}, str(e))
            return {"CANCELLED"}
        s.status = self._finish_message()
        self.report({"WARNING"} if self._skipped else {"INFO"}, s.status)
        return {"FINISHED"}

    def invoke(self, context, event):  # the UI: a modal operator polling the jobs, one after another
        s = _settings(context)
        try:
            self._prepare(context)
            self._job = _api(s).submit("generate", self._tasks[0][0])
        except (client.ServerError, ValueError) as e:
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
        api = _api(s)
        if event.type == "ESC" or s.cancel_requested:
            try:
                api.cancel(self._job["id"])
            except client.ServerError:
                pass
            return self._end(context, f"cancelled ({self._count} object(s) textured).", {"CANCELLED"})
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        try:
            self._job = api.job(self._job["id"])
            s.progress = 100.0 * (self._done + self._job.get("progress", 0.0)) / len(self._tasks)
            s.status = self._job.get("message", "")
            context.window_manager.progress_update(s.progress)
            for area in context.screen.areas if context.screen else []:
                area.tag_redraw()
            if self._job["state"] not in client.TERMINAL:
                return {"RUNNING_MODAL"}
            self._count += _apply(client.job_result(self._job), self._tasks[self._done][1], self.own)
            self._done += 1
            if self._done < len(self._tasks):
                self._job = api.submit("generate", self._tasks[self._done][0])
                return {"RUNNING_MODAL"}
        except (client.ServerError, ValueError) as e:
            self.report({"ERROR"}, str(e))
            return self._end(context, str(e), {"CANCELLED"})
        message = self._finish_message()
        self.report({"WARNING"} if self._skipped else {"INFO"}, message)
        return self._end(context, message, {"FINISHED"})

    def _end(self, context, message, result):
        s = _settings(context)
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
        wm.progress_end()
        s.busy, s.cancel_requested, s.status = False, False, message
        return result


def _selected(context, what: str) -> list:
    objs = [o for o in context.selected_objects if o.type in TEXTURABLE]
    if not objs:
        raise ValueError(f"select one or more mesh objects first ({what} works on the selection).")
    return objs


class GANPLUG_OT_generate(_GenerateBase, bpy.types.Operator):
    """Generate a texture, normal map and roughness map for the active object's material"""

    bl_idname = "ganplug.generate"
    bl_label = "Generate texture"
    bl_options = {"REGISTER", "UNDO"}

    def plan(self, context):
        obj = context.active_object
        if obj is None:
            raise ValueError("select an object first: Generate textures the active object.")
        if obj.type not in TEXTURABLE:
            raise ValueError(f"{obj.name} cannot hold a material (it is a {obj.type}); select a mesh.")
        return [(obj.name, _base_recipe(_settings(context)))]


class GANPLUG_OT_populate(_GenerateBase, bpy.types.Operator):
    """Each selected object its own material and texture: consecutive seeds, or a sweep of one direction"""

    bl_idname = "ganplug.populate"
    bl_label = "Populate selected"
    bl_options = {"REGISTER", "UNDO"}
    own = True

    def plan(self, context):
        s = _settings(context)
        names = [o.name for o in _selected(context, "Populate")]
        return state.populate_recipes(names, _base_recipe(s), s.variation, s.direction, s.sweep)


class GANPLUG_OT_regenerate(_GenerateBase, bpy.types.Operator):
    """Redo each selected object's texture from what made it (its ganplug_* custom properties)"""

    bl_idname = "ganplug.regenerate"
    bl_label = "Regenerate selected"
    bl_options = {"REGISTER", "UNDO"}
    own = True

    def plan(self, context):
        objs = [o for o in context.selected_objects if o.type in TEXTURABLE]
        if not objs and context.active_object is not None:
            objs = [context.active_object]
        if not objs:
            raise ValueError("select the objects to regenerate first.")
        plan, problems = [], []
        for obj in sorted(objs, key=lambda o: o.name):
            try:
                plan.append((obj.name, state.Recipe.from_props(obj, owner=obj.name)))
            except ValueError as e:
                problems.append(str(e))
        if not plan:
            raise ValueError(" ".join(problems))
        self._skipped = problems
        return plan


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
    col = layout.column(align=True)
    col.prop(s, "mapping", expand=True)
    col.prop(s, "strength")
    col.prop(s, "invert")
    col = layout.column(align=True)
    col.prop(s, "variation", expand=True)
    if s.variation == "DIRECTION":
        row = col.row(align=True)
        row.prop(s, "direction")
        row.prop(s, "sweep")
    col = layout.column(align=True)
    col.enabled = not s.busy
    row = col.row(align=True)
    row.operator("ganplug.generate", icon="TEXTURE")
    row.operator("ganplug.populate", icon="OUTLINER_OB_GROUP_INSTANCE")
    col.operator("ganplug.regenerate", icon="FILE_REFRESH")
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


CLASSES = (GanplugSettings, GANPLUG_OT_generate, GANPLUG_OT_populate, GANPLUG_OT_regenerate, GANPLUG_OT_cancel,
           GANPLUG_OT_random_seed, GANPLUG_OT_models, GANPLUG_PT_material, GANPLUG_PT_shader)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.ganplug = bpy.props.PointerProperty(type=GanplugSettings)


def unregister():
    del bpy.types.Scene.ganplug
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
