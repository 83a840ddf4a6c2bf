// The bundle's envoy.yaml, checked against Envoy's documented v3 API (test/envoy-schema.ts) and
// against the rest of the bundle. Envoy itself is not run: Debian has no envoy package
// (`apt-cache search envoy` finds none) and no npm package ships the binary.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { buildHasherOptions } from '../src/hasher/cli.ts';
import { envoySchema, filterTypes, luaHeaderMethods, validateEnvoy } from './envoy-schema.ts';

const dev = fileURLToPath(
  new URL('../../../deploy/kubernetes/embedding-gateway/overlays/dev/', import.meta.url),
);
const bootstrapType = 'envoy.config.bootstrap.v3.Bootstrap';

// biome-ignore lint/suspicious/noExplicitAny: a YAML document walked by the checks below
type Yaml = any;

function load(): Yaml {
  return parse(readFileSync(`${dev}envoy.yaml`, 'utf8'));
}

/** The hasher's flags as edge.yaml passes them. */
function hasherArgs(): string[] {
  const edge = readFileSync(`${dev}edge.yaml`, 'utf8');
  const container = edge.split(/^ {8}- name: /m).find((part) => part.startsWith('hasher\n'));
  assert.ok(container, 'edge.yaml has a hasher container');
  const args = container.split(/^ {10}args:\n/m)[1]!.split(/^ {10}\w/m)[0]!;
  return [...args.matchAll(/^ {12}- (\S+)$/gm)].map((match) => match[1]!);
}

test("envoy.yaml uses only fields, types, enum values and oneofs of Envoy's v3 API", () => {
  const config = load();
  assert.deepEqual(validateEnvoy(config, bootstrapType), []);
  for (const cluster of config.static_resources.clusters) {
    for (const [name, options] of Object.entries(cluster.typed_extension_protocol_options ?? {})) {
      assert.equal((options as Yaml)['@type'], `type.googleapis.com/${name}`, `${cluster.name}: ${name}`);
      assert.ok(envoySchema[name], `no schema for ${name}`);
      assert.deepEqual(validateEnvoy(options, name, `${cluster.name}.${name}`), []);
    }
  }
});

test('the checker refuses what Envoy refuses: unknown fields, bad enums, durations, oneofs, required fields', () => {
  const broken = (edit: (config: Yaml) => void) => {
    const config = load();
    edit(config);
    return validateEnvoy(config, bootstrapType).join('\n');
  };
  const hcm = (config: Yaml) => config.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
  const extProc = (config: Yaml) => hcm(config).http_filters[1].typed_config;
  assert.match(
    broken((c) => {
      extProc(c).failure_mode_alow = true;
    }),
    /has no field 'failure_mode_alow'/,
  );
  assert.match(
    broken((c) => {
      extProc(c).processing_mode.request_body_mode = 'BUFFER';
    }),
    /'BUFFER' is not one of/,
  );
  assert.match(
    broken((c) => {
      extProc(c).grpc_service.timeout = 5;
    }),
    /a duration such as/,
  );
  assert.match(
    broken((c) => {
      hcm(c).route_config.virtual_hosts[0].routes[0].route.cluster_header = 'x';
    }),
    /only one of cluster, cluster_header/,
  );
  assert.match(
    broken((c) => {
      delete hcm(c).route_config.virtual_hosts[0].domains;
    }),
    /domains: required/,
  );
  assert.match(
    broken((c) => {
      hcm(c).http_filters[0].typed_config['@type'] =
        'type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lu';
    }),
    /no schema for envoy\.extensions\.filters\.http\.lua\.v3\.Lu/,
  );
});

test('envoy.yaml agrees with itself and with the hasher: filters, clusters, ports, buffer limits', () => {
  const config = load();
  const [listener] = config.static_resources.listeners;
  const hcm = listener.filter_chains[0].filters[0];
  assert.equal(hcm.typed_config['@type'], `type.googleapis.com/${filterTypes[hcm.name]}`);
  const filters: Yaml[] = hcm.typed_config.http_filters;
  for (const filter of filters) {
    assert.equal(
      filter.typed_config['@type'],
      `type.googleapis.com/${filterTypes[filter.name]}`,
      filter.name,
    );
  }
  // Envoy refuses a chain whose last filter is not terminal; the Lua filter that drops a
  // client's x-body-hash runs before ext_proc sets the real one.
  assert.deepEqual(
    filters.map((filter) => filter.name),
    ['envoy.filters.http.lua', 'envoy.filters.http.ext_proc', 'envoy.filters.http.router'],
  );

  const clusters = new Map<string, Yaml>(config.static_resources.clusters.map((c: Yaml) => [c.name, c]));
  assert.equal(clusters.size, config.static_resources.clusters.length, 'cluster names are unique');
  for (const cluster of clusters.values()) {
    assert.equal(cluster.load_assignment.cluster_name, cluster.name);
    for (const endpoint of cluster.load_assignment.endpoints.flatMap((e: Yaml) => e.lb_endpoints)) {
      const address = endpoint.endpoint.address.socket_address.address;
      // A STATIC cluster takes IP addresses only; names need a DNS cluster type.
      if (cluster.type === 'STATIC') assert.ok(isIP(address), `${cluster.name}: ${address} is not an IP`);
    }
  }

  const extProc = filters[1].typed_config;
  const hasherCluster = clusters.get(extProc.grpc_service.envoy_grpc.cluster_name);
  assert.ok(hasherCluster, 'the ext_proc cluster exists');
  const protocol =
    hasherCluster.typed_extension_protocol_options['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'];
  assert.ok(protocol.explicit_http_config.http2_protocol_options, 'gRPC needs HTTP/2 to the hasher');
  const [subcommand, ...flags] = hasherArgs();
  assert.equal(subcommand, 'hasher');
  const hasher = buildHasherOptions(flags, {})!;
  const hasherEndpoint =
    hasherCluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
  assert.equal(hasherEndpoint.port_value, hasher.port, "Envoy dials the hasher's --address port");
  assert.equal(extProc.failure_mode_allow, true, 'the edge serves, unhashed, while the hasher is down');
  assert.equal(extProc.allow_mode_override, true, 'the hasher switches the body mode to BUFFERED');
  assert.equal(extProc.processing_mode.request_header_mode, 'SEND');
  assert.equal(extProc.processing_mode.request_body_mode, 'NONE', 'bodies are asked for only when announced');
  // A BUFFERED body is held on the connection: room for the largest body hashed, and headers.
  assert.ok(
    listener.per_connection_buffer_limit_bytes >= hasher.maxBodyBytes + 64 * 1024,
    `per_connection_buffer_limit_bytes ${listener.per_connection_buffer_limit_bytes} < ${hasher.maxBodyBytes} + headers`,
  );

  const routes: Yaml[] = hcm.typed_config.route_config.virtual_hosts.flatMap((v: Yaml) => v.routes);
  for (const route of routes) {
    const target = clusters.get(route.route.cluster);
    assert.ok(target, `route to an unknown cluster ${route.route.cluster}`);
    if (target.lb_policy === 'RING_HASH') {
      assert.deepEqual(
        route.route.hash_policy.map((policy: Yaml) => policy.header?.header_name),
        ['x-body-hash'],
        'a ring hash without a hash policy picks hosts at random',
      );
    }
  }

  const lua: string = filters[0].typed_config.default_source_code.inline_string;
  assert.match(lua, /^function envoy_on_request\(request_handle\)$/m);
  for (const [, method] of lua.matchAll(/headers:(\w+)\(/g)) {
    assert.ok(luaHeaderMethods.includes(method!), `headers:${method} is not in the Lua filter's API`);
  }
});
