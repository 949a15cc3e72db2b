"""ganplug for Krita: a docker that asks a running `ganplug serve` for images and adds them as layers.

Importable without Krita (for the unit tests of state.py and for kritarunner scripts): the docker is
registered only when the `krita` module is present.
"""

try:
    import krita
except ImportError:  # plain Python: tests import ganplug_krita.state
    krita = None

if krita is not None:
    from .docker import GanplugDocker

    _app = krita.Krita.instance()
    _app.addDockWidgetFactory(
        krita.DockWidgetFactory("ganplug_docker", krita.DockWidgetFactoryBase.DockRight, GanplugDocker)
    )
