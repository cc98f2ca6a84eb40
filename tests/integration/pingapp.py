"""An app with no listeners: the stack answers ARP and ping only (used by the
supervisor tests, which must not depend on HTTP)."""
from framework.web.app import App

app = App()
