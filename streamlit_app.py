"""ResNet Lab: the entry point. ``ui.common.frame`` draws the frame (page config, navigation over
pages/, the shared sidebar); then the page the visitor asked for runs inside it."""

from ui.common import frame

frame().run()
