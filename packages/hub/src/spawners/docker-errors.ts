// Failures of the Docker spawner, one class per kind with a stable code. Each message names the
// failure in words a person acts on (the engine is down, the image is missing, the port is taken),
// because the message is what the API's `failure` field and the spawn page show.
import { SeahorseError } from '@seahorse/runtime';

/** The engine does not answer (not running, wrong DOCKER_HOST, no permission). */
export class DockerEngineUnavailableError extends SeahorseError {
  /** unix:///path or tcp://host:port. */
  readonly address: string;
  constructor(address: string, reason: string, options?: ErrorOptions) {
    super(
      'HUB_DOCKER_ENGINE_DOWN',
      `Docker Engine unavailable at ${address} (${reason}): ${
        address.startsWith('unix://')
          ? 'start dockerd, or point DOCKER_HOST at its socket'
          : 'start dockerd listening there (-H tcp://…), or fix DOCKER_HOST'
      }`,
      options,
    );
    this.address = address;
  }
}

/** The TLS connection to an engine on TCP failed: a certificate refused, by us or by the engine. */
export class DockerTlsError extends SeahorseError {
  readonly address: string;
  constructor(address: string, reason: string) {
    super('HUB_DOCKER_TLS', `Docker Engine at ${address} refused over TLS: ${reason}`);
    this.address = address;
  }
}

/** The engine answered a request with an error status; `status` and the engine's message kept. */
export class DockerApiError extends SeahorseError {
  readonly status: number;
  readonly engineMessage: string;
  constructor(status: number, what: string, engineMessage: string, code = 'HUB_DOCKER_API') {
    super(code, `${what} failed with ${status}: ${engineMessage || '(no message)'}`);
    this.status = status;
    this.engineMessage = engineMessage;
  }
}

/** The server's image is not on the engine and could not (or may not) be pulled. */
export class DockerImageError extends SeahorseError {
  readonly image: string;
  constructor(image: string, reason: string) {
    super('HUB_DOCKER_IMAGE', `image missing: ${JSON.stringify(image)} ${reason}`);
    this.image = image;
  }
}

/** The port the server needs is taken (a fixed DockerSpawner.port on the host network, a bound host port). */
export class DockerPortError extends SeahorseError {
  constructor(detail: string) {
    super('HUB_DOCKER_PORT', `port clash: ${detail}`);
  }
}

/** A DockerSpawner setting is malformed (a volume spec, extra_host_config, a template). */
export class DockerConfigError extends SeahorseError {
  constructor(message: string) {
    super('HUB_DOCKER_CONFIG', message);
  }
}
