// The hub's configuration in the compose stack (mounted read-only at /etc/seahorse/). Every
// secret comes from the environment (stack.env), never from this file. The *_URL variables only
// exist so the stack's test can run everything on the host network; a deployment leaves them unset.
const env = process.env;
const required = (name) => {
  if (!env[name]) throw new Error(`${name} is not set: copy example-stack.env to stack.env and fill it in`);
  return env[name];
};
const postgresHost = env.POSTGRES_HOST || 'postgres:5432';
const networkName = env.DOCKER_NETWORK_NAME || 'jupyterhub-net';

export default {
  JupyterHub: {
    // The hub's own listener: the proxy forwards /hub/ here and the hub programs the proxy.
    hub_bind_url: env.HUB_BIND_URL || 'http://0.0.0.0:8081',
    hub_connect_url: env.HUB_CONNECT_URL || 'http://jupyterhub:8081',
    bind_url: env.PUBLIC_URL || 'http://:8000',
    db_url: `postgresql://jupyterhub:${encodeURIComponent(required('POSTGRES_PASSWORD'))}@${postgresHost}/jupyterhub`,
    authenticator_class: 'password',
    spawner_class: 'docker',
    cleanup_servers: false,
  },
  Authenticator: {
    allow_all: true,
    admin_users: [env.JUPYTER_ADMIN_USER || 'admin'],
  },
  ConfigurableHTTPProxy: {
    // Compose starts the proxy; the hub only programs its REST API (CONFIGPROXY_AUTH_TOKEN).
    should_start: false,
    api_url: env.PROXY_API_URL || 'http://proxy:8001',
  },
  Spawner: {
    default_url: '/lab',
    start_timeout: 120,
  },
  DockerSpawner: {
    image: env.DOCKER_NOTEBOOK_IMAGE || 'personal-jupyter-singleuser:latest',
    network_name: networkName,
    // Servers are reached at their address on the stack's network (on the host network: loopback).
    use_internal_ip: networkName !== 'host',
    // One volume per user, kept when the container goes: the user's files survive restarts.
    volumes: { 'jupyterhub-user-{username}': '/home/jovyan' },
    remove: true,
    environment: {
      TZ: env.TZ || 'Etc/UTC',
      OPENAI_API_KEY: env.OPENAI_API_KEY || '',
      ANTHROPIC_API_KEY: env.ANTHROPIC_API_KEY || '',
    },
  },
};
