# JupyterHub behind Seahorse's proxy, which runs as its own container (seed 002's stack).
import os

c = get_config()  # noqa: F821

# The proxy is started by compose, not by the hub: the hub only programs its REST API.
c.ConfigurableHTTPProxy.should_start = False
c.ConfigurableHTTPProxy.api_url = "http://proxy:8001"
c.ConfigurableHTTPProxy.auth_token = os.environ["CONFIGPROXY_AUTH_TOKEN"]

c.JupyterHub.hub_bind_url = "http://0.0.0.0:8081"
c.JupyterHub.hub_connect_url = "http://jupyterhub:8081"
c.JupyterHub.db_url = (
    f"postgresql://jupyterhub:{os.environ['POSTGRES_PASSWORD']}@postgres:5432/jupyterhub"
)
c.JupyterHub.cookie_secret_file = "/data/jupyterhub_cookie_secret"

c.JupyterHub.authenticator_class = "jupyterhub.auth.DummyAuthenticator"
c.DummyAuthenticator.password = os.environ["JUPYTER_PASSWORD"]
