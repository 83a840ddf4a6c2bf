// The parts of Envoy's v3 API (1.32, the image the bundle names) that the bundle's envoy.yaml
// uses, written from Envoy's API reference: each message's documented fields, their JSON types,
// enum values, oneofs and validation rules. Envoy is not installable here (no Debian package, no
// npm package ships it), so this is how the config is checked: a field Envoy does not know, a
// wrong type, an enum value it lacks, a missing required field or two members of one oneof fail
// here as they would fail `envoy --mode validate`.

export type FieldType =
  | 'string'
  | 'bool'
  | 'uint32'
  | 'duration'
  | { enum: readonly string[] }
  | { message: string }
  /** google.protobuf.Any: `@type` names the message. */
  | 'any'
  /** Documented but not used here: accepted, not descended into. */
  | 'opaque';

export interface Field {
  type: FieldType;
  repeated?: boolean;
  /** PGV rules: `required` (message.required, min_len 1, min_items 1). */
  required?: boolean;
}

export interface MessageSchema {
  fields: Record<string, Field>;
  /** Groups of which at most one may be set; `required` groups need exactly one. */
  oneofs?: { members: readonly string[]; required?: boolean }[];
}

const opaque = (...names: string[]): Record<string, Field> =>
  Object.fromEntries(names.map((name) => [name, { type: 'opaque' as const }]));
const message = (name: string, extra: Omit<Field, 'type'> = {}): Field => ({
  type: { message: name },
  ...extra,
});
const enumOf = (...values: string[]): Field => ({ type: { enum: values } });

const headerSendMode = enumOf('DEFAULT', 'SEND', 'SKIP');
const bodySendMode = enumOf(
  'NONE',
  'STREAMED',
  'BUFFERED',
  'BUFFERED_PARTIAL',
  'FULL_DUPLEX_STREAMED',
  'GRPC',
);

/** By full message name; `@type` URLs are `type.googleapis.com/<name>`. */
export const envoySchema: Record<string, MessageSchema> = {
  'envoy.config.bootstrap.v3.Bootstrap': {
    fields: {
      admin: message('envoy.config.bootstrap.v3.Admin'),
      static_resources: message('envoy.config.bootstrap.v3.Bootstrap.StaticResources'),
      ...opaque(
        'node',
        'node_context_params',
        'dynamic_resources',
        'cluster_manager',
        'hds_config',
        'flags_path',
        'stats_sinks',
        'deferred_stat_options',
        'stats_config',
        'stats_flush_interval',
        'stats_flush_on_admin',
        'watchdog',
        'watchdogs',
        'tracing',
        'layered_runtime',
        'overload_manager',
        'enable_dispatcher_stats',
        'header_prefix',
        'stats_server_version_override',
        'use_tcp_for_dns_lookups',
        'dns_resolution_config',
        'typed_dns_resolver_config',
        'bootstrap_extensions',
        'fatal_actions',
        'config_sources',
        'default_config_source',
        'default_socket_interface',
        'certificate_provider_instances',
        'inline_headers',
        'perf_tracing_file_path',
        'default_regex_engine',
        'xds_delegate_extension',
        'xds_config_tracker_extension',
        'listener_manager',
        'application_log_config',
        'grpc_async_client_manager_config',
        'memory_allocator_manager',
      ),
    },
  },
  'envoy.config.bootstrap.v3.Admin': {
    fields: {
      address: message('envoy.config.core.v3.Address'),
      ...opaque(
        'access_log',
        'access_log_path',
        'profile_path',
        'socket_options',
        'ignore_global_conn_limit',
        'allow_paths',
      ),
    },
  },
  'envoy.config.bootstrap.v3.Bootstrap.StaticResources': {
    fields: {
      listeners: message('envoy.config.listener.v3.Listener', { repeated: true }),
      clusters: message('envoy.config.cluster.v3.Cluster', { repeated: true }),
      ...opaque('secrets'),
    },
  },
  'envoy.config.core.v3.Address': {
    fields: {
      socket_address: message('envoy.config.core.v3.SocketAddress'),
      ...opaque('pipe', 'envoy_internal_address'),
    },
    oneofs: [{ members: ['socket_address', 'pipe', 'envoy_internal_address'], required: true }],
  },
  'envoy.config.core.v3.SocketAddress': {
    fields: {
      protocol: enumOf('TCP', 'UDP'),
      address: { type: 'string', required: true },
      port_value: { type: 'uint32' },
      named_port: { type: 'string' },
      resolver_name: { type: 'string' },
      ipv4_compat: { type: 'bool' },
      ...opaque('network_namespace_filepath'),
    },
    oneofs: [{ members: ['port_value', 'named_port'], required: true }],
  },
  'envoy.config.listener.v3.Listener': {
    fields: {
      name: { type: 'string' },
      address: message('envoy.config.core.v3.Address'),
      filter_chains: message('envoy.config.listener.v3.FilterChain', { repeated: true }),
      per_connection_buffer_limit_bytes: { type: 'uint32' },
      stat_prefix: { type: 'string' },
      ...opaque(
        'additional_addresses',
        'filter_chain_matcher',
        'use_original_dst',
        'default_filter_chain',
        'metadata',
        'drain_type',
        'listener_filters',
        'listener_filters_timeout',
        'continue_on_listener_filters_timeout',
        'transparent',
        'freebind',
        'socket_options',
        'tcp_fast_open_queue_length',
        'traffic_direction',
        'udp_listener_config',
        'api_listener',
        'connection_balance_config',
        'enable_reuse_port',
        'access_log',
        'tcp_backlog_size',
        'max_connections_to_accept_per_socket_event',
        'bind_to_port',
        'internal_listener',
        'enable_mptcp',
        'ignore_global_conn_limit',
        'bypass_overload_manager',
      ),
    },
  },
  'envoy.config.listener.v3.FilterChain': {
    fields: {
      filters: message('envoy.config.listener.v3.Filter', { repeated: true }),
      name: { type: 'string' },
      ...opaque(
        'filter_chain_match',
        'use_proxy_proto',
        'metadata',
        'transport_socket',
        'transport_socket_connect_timeout',
      ),
    },
  },
  'envoy.config.listener.v3.Filter': {
    fields: {
      name: { type: 'string', required: true },
      typed_config: { type: 'any' },
      ...opaque('config_discovery'),
    },
    oneofs: [{ members: ['typed_config', 'config_discovery'] }],
  },
  'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager': {
    fields: {
      codec_type: enumOf('AUTO', 'HTTP1', 'HTTP2', 'HTTP3'),
      stat_prefix: { type: 'string', required: true },
      route_config: message('envoy.config.route.v3.RouteConfiguration'),
      http_filters: message('envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter', {
        repeated: true,
      }),
      use_remote_address: { type: 'bool' },
      xff_num_trusted_hops: { type: 'uint32' },
      skip_xff_append: { type: 'bool' },
      stream_idle_timeout: { type: 'duration' },
      request_timeout: { type: 'duration' },
      request_headers_timeout: { type: 'duration' },
      drain_timeout: { type: 'duration' },
      max_request_headers_kb: { type: 'uint32' },
      ...opaque(
        'rds',
        'scoped_routes',
        'add_user_agent',
        'tracing',
        'common_http_protocol_options',
        'http_protocol_options',
        'http2_protocol_options',
        'http3_protocol_options',
        'server_name',
        'server_header_transformation',
        'scheme_header_transformation',
        'delayed_close_timeout',
        'access_log',
        'access_log_flush_interval',
        'flush_access_log_on_new_request',
        'access_log_options',
        'original_ip_detection_extensions',
        'early_header_mutation_extensions',
        'internal_address_config',
        'via',
        'generate_request_id',
        'preserve_external_request_id',
        'always_set_request_id_in_response',
        'forward_client_cert_details',
        'set_current_client_cert_details',
        'proxy_100_continue',
        'represent_ipv4_remote_address_as_ipv4_mapped_ipv6',
        'upgrade_configs',
        'normalize_path',
        'merge_slashes',
        'path_with_escaped_slashes_action',
        'request_id_extension',
        'local_reply_config',
        'strip_matching_host_port',
        'strip_any_host_port',
        'stream_error_on_invalid_http_message',
        'path_normalization_options',
        'strip_trailing_host_dot',
        'proxy_status_config',
        'typed_header_validation_config',
        'append_x_forwarded_port',
        'append_local_overload',
        'add_proxy_protocol_connection_state',
      ),
    },
    oneofs: [{ members: ['rds', 'route_config', 'scoped_routes'], required: true }],
  },
  'envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter': {
    fields: {
      name: { type: 'string', required: true },
      typed_config: { type: 'any' },
      is_optional: { type: 'bool' },
      disabled: { type: 'bool' },
      ...opaque('config_discovery'),
    },
    oneofs: [{ members: ['typed_config', 'config_discovery'] }],
  },
  'envoy.config.route.v3.RouteConfiguration': {
    fields: {
      name: { type: 'string' },
      virtual_hosts: message('envoy.config.route.v3.VirtualHost', { repeated: true }),
      validate_clusters: { type: 'bool' },
      ...opaque(
        'vhds',
        'internal_only_headers',
        'response_headers_to_add',
        'response_headers_to_remove',
        'request_headers_to_add',
        'request_headers_to_remove',
        'most_specific_header_mutations_wins',
        'max_direct_response_body_size_bytes',
        'cluster_specifier_plugins',
        'request_mirror_policies',
        'ignore_port_in_host_matching',
        'ignore_path_parameters_in_path_matching',
        'typed_per_filter_config',
        'metadata',
      ),
    },
  },
  'envoy.config.route.v3.VirtualHost': {
    fields: {
      name: { type: 'string', required: true },
      domains: { type: 'string', repeated: true, required: true },
      routes: message('envoy.config.route.v3.Route', { repeated: true }),
      ...opaque(
        'matcher',
        'require_tls',
        'virtual_clusters',
        'rate_limits',
        'request_headers_to_add',
        'request_headers_to_remove',
        'response_headers_to_add',
        'response_headers_to_remove',
        'cors',
        'typed_per_filter_config',
        'include_request_attempt_count',
        'include_attempt_count_in_response',
        'retry_policy',
        'retry_policy_typed_config',
        'hedge_policy',
        'include_is_timeout_retry_header',
        'per_request_buffer_limit_bytes',
        'request_mirror_policies',
        'metadata',
      ),
    },
  },
  'envoy.config.route.v3.Route': {
    fields: {
      name: { type: 'string' },
      match: message('envoy.config.route.v3.RouteMatch', { required: true }),
      route: message('envoy.config.route.v3.RouteAction'),
      ...opaque(
        'redirect',
        'direct_response',
        'filter_action',
        'non_forwarding_action',
        'metadata',
        'decorator',
        'typed_per_filter_config',
        'request_headers_to_add',
        'request_headers_to_remove',
        'response_headers_to_add',
        'response_headers_to_remove',
        'tracing',
        'per_request_buffer_limit_bytes',
        'stat_prefix',
      ),
    },
    oneofs: [
      {
        members: ['route', 'redirect', 'direct_response', 'filter_action', 'non_forwarding_action'],
        required: true,
      },
    ],
  },
  'envoy.config.route.v3.RouteMatch': {
    fields: {
      prefix: { type: 'string' },
      path: { type: 'string' },
      case_sensitive: { type: 'bool' },
      ...opaque(
        'safe_regex',
        'connect_matcher',
        'path_separated_prefix',
        'path_match_policy',
        'runtime_fraction',
        'headers',
        'query_parameters',
        'grpc',
        'tls_context',
        'dynamic_metadata',
        'filter_state',
      ),
    },
    oneofs: [
      {
        members: [
          'prefix',
          'path',
          'safe_regex',
          'connect_matcher',
          'path_separated_prefix',
          'path_match_policy',
        ],
        required: true,
      },
    ],
  },
  'envoy.config.route.v3.RouteAction': {
    fields: {
      cluster: { type: 'string' },
      cluster_header: { type: 'string' },
      timeout: { type: 'duration' },
      idle_timeout: { type: 'duration' },
      hash_policy: message('envoy.config.route.v3.RouteAction.HashPolicy', { repeated: true }),
      ...opaque(
        'weighted_clusters',
        'cluster_specifier_plugin',
        'inline_cluster_specifier_plugin',
        'cluster_not_found_response_code',
        'metadata_match',
        'prefix_rewrite',
        'regex_rewrite',
        'path_rewrite_policy',
        'host_rewrite_literal',
        'auto_host_rewrite',
        'host_rewrite_header',
        'host_rewrite_path_regex',
        'append_x_forwarded_host',
        'early_data_policy',
        'retry_policy',
        'retry_policy_typed_config',
        'request_mirror_policies',
        'priority',
        'rate_limits',
        'include_vh_rate_limits',
        'cors',
        'max_grpc_timeout',
        'grpc_timeout_offset',
        'upgrade_configs',
        'internal_redirect_policy',
        'internal_redirect_action',
        'max_internal_redirects',
        'hedge_policy',
        'max_stream_duration',
      ),
    },
    oneofs: [
      {
        members: [
          'cluster',
          'cluster_header',
          'weighted_clusters',
          'cluster_specifier_plugin',
          'inline_cluster_specifier_plugin',
        ],
        required: true,
      },
    ],
  },
  'envoy.config.route.v3.RouteAction.HashPolicy': {
    fields: {
      header: message('envoy.config.route.v3.RouteAction.HashPolicy.Header'),
      terminal: { type: 'bool' },
      ...opaque('cookie', 'connection_properties', 'query_parameter', 'filter_state'),
    },
    oneofs: [
      {
        members: ['header', 'cookie', 'connection_properties', 'query_parameter', 'filter_state'],
        required: true,
      },
    ],
  },
  'envoy.config.route.v3.RouteAction.HashPolicy.Header': {
    fields: { header_name: { type: 'string', required: true }, ...opaque('regex_rewrite') },
  },
  'envoy.extensions.filters.http.lua.v3.Lua': {
    fields: {
      default_source_code: message('envoy.config.core.v3.DataSource'),
      stat_prefix: { type: 'string' },
      clear_route_cache: { type: 'bool' },
      ...opaque('inline_code', 'source_codes'),
    },
  },
  'envoy.config.core.v3.DataSource': {
    fields: {
      filename: { type: 'string' },
      inline_bytes: { type: 'string' },
      inline_string: { type: 'string' },
      environment_variable: { type: 'string' },
      ...opaque('watched_directory'),
    },
    oneofs: [
      { members: ['filename', 'inline_bytes', 'inline_string', 'environment_variable'], required: true },
    ],
  },
  'envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor': {
    fields: {
      grpc_service: message('envoy.config.core.v3.GrpcService'),
      failure_mode_allow: { type: 'bool' },
      processing_mode: message('envoy.extensions.filters.http.ext_proc.v3.ProcessingMode'),
      allow_mode_override: { type: 'bool' },
      message_timeout: { type: 'duration' },
      max_message_timeout: { type: 'duration' },
      stat_prefix: { type: 'string' },
      disable_immediate_response: { type: 'bool' },
      observability_mode: { type: 'bool' },
      ...opaque(
        'http_service',
        'request_attributes',
        'response_attributes',
        'mutation_rules',
        'forward_rules',
        'filter_metadata',
        'metadata_options',
        'disable_clear_route_cache',
        'route_cache_action',
        'deferred_close_timeout',
        'send_body_without_waiting_for_header_response',
        'allowed_override_modes',
        'on_processing_response',
      ),
    },
    oneofs: [{ members: ['grpc_service', 'http_service'], required: true }],
  },
  'envoy.extensions.filters.http.ext_proc.v3.ProcessingMode': {
    fields: {
      request_header_mode: headerSendMode,
      response_header_mode: headerSendMode,
      request_body_mode: bodySendMode,
      response_body_mode: bodySendMode,
      request_trailer_mode: headerSendMode,
      response_trailer_mode: headerSendMode,
    },
  },
  'envoy.config.core.v3.GrpcService': {
    fields: {
      envoy_grpc: message('envoy.config.core.v3.GrpcService.EnvoyGrpc'),
      timeout: { type: 'duration' },
      ...opaque('google_grpc', 'initial_metadata', 'retry_policy'),
    },
    oneofs: [{ members: ['envoy_grpc', 'google_grpc'], required: true }],
  },
  'envoy.config.core.v3.GrpcService.EnvoyGrpc': {
    fields: {
      cluster_name: { type: 'string', required: true },
      authority: { type: 'string' },
      skip_envoy_headers: { type: 'bool' },
      ...opaque('retry_policy', 'max_receive_message_length'),
    },
  },
  'envoy.extensions.filters.http.router.v3.Router': {
    fields: {
      dynamic_stats: { type: 'bool' },
      start_child_span: { type: 'bool' },
      suppress_envoy_headers: { type: 'bool' },
      respect_expected_rq_timeout: { type: 'bool' },
      suppress_grpc_request_failure_code_stats: { type: 'bool' },
      ...opaque('upstream_log', 'upstream_log_options', 'strict_check_headers', 'upstream_http_filters'),
    },
  },
  'envoy.config.cluster.v3.Cluster': {
    fields: {
      name: { type: 'string', required: true },
      type: enumOf('STATIC', 'STRICT_DNS', 'LOGICAL_DNS', 'EDS', 'ORIGINAL_DST'),
      connect_timeout: { type: 'duration' },
      per_connection_buffer_limit_bytes: { type: 'uint32' },
      lb_policy: enumOf(
        'ROUND_ROBIN',
        'LEAST_REQUEST',
        'RING_HASH',
        'RANDOM',
        'MAGLEV',
        'CLUSTER_PROVIDED',
        'LOAD_BALANCING_POLICY_CONFIG',
      ),
      dns_lookup_family: enumOf('AUTO', 'V4_ONLY', 'V6_ONLY', 'V4_PREFERRED', 'ALL'),
      dns_refresh_rate: { type: 'duration' },
      respect_dns_ttl: { type: 'bool' },
      load_assignment: message('envoy.config.endpoint.v3.ClusterLoadAssignment'),
      typed_extension_protocol_options: { type: 'opaque' },
      ...opaque(
        'alt_stat_name',
        'cluster_type',
        'eds_cluster_config',
        'health_checks',
        'max_requests_per_connection',
        'circuit_breakers',
        'upstream_http_protocol_options',
        'common_http_protocol_options',
        'http_protocol_options',
        'http2_protocol_options',
        'dns_failure_refresh_rate',
        'dns_resolvers',
        'use_tcp_for_dns_lookups',
        'dns_resolution_config',
        'typed_dns_resolver_config',
        'wait_for_warm_on_init',
        'outlier_detection',
        'cleanup_interval',
        'upstream_bind_config',
        'lb_subset_config',
        'ring_hash_lb_config',
        'maglev_lb_config',
        'original_dst_lb_config',
        'least_request_lb_config',
        'round_robin_lb_config',
        'common_lb_config',
        'transport_socket',
        'transport_socket_matches',
        'metadata',
        'protocol_selection',
        'upstream_connection_options',
        'close_connections_on_host_health_failure',
        'ignore_health_on_host_removal',
        'filters',
        'load_balancing_policy',
        'lrs_server',
        'track_timeout_budgets',
        'upstream_config',
        'track_cluster_stats',
        'preconnect_policy',
        'connection_pool_per_downstream_connection',
      ),
    },
    oneofs: [{ members: ['type', 'cluster_type'] }],
  },
  'envoy.config.endpoint.v3.ClusterLoadAssignment': {
    fields: {
      cluster_name: { type: 'string', required: true },
      endpoints: message('envoy.config.endpoint.v3.LocalityLbEndpoints', { repeated: true }),
      ...opaque('named_endpoints', 'policy'),
    },
  },
  'envoy.config.endpoint.v3.LocalityLbEndpoints': {
    fields: {
      lb_endpoints: message('envoy.config.endpoint.v3.LbEndpoint', { repeated: true }),
      priority: { type: 'uint32' },
      load_balancing_weight: { type: 'uint32' },
      ...opaque('locality', 'metadata', 'leds_cluster_locality_config', 'proximity'),
    },
  },
  'envoy.config.endpoint.v3.LbEndpoint': {
    fields: {
      endpoint: message('envoy.config.endpoint.v3.Endpoint'),
      load_balancing_weight: { type: 'uint32' },
      ...opaque('endpoint_name', 'health_status', 'metadata'),
    },
    oneofs: [{ members: ['endpoint', 'endpoint_name'] }],
  },
  'envoy.config.endpoint.v3.Endpoint': {
    fields: {
      address: message('envoy.config.core.v3.Address'),
      hostname: { type: 'string' },
      ...opaque('health_check_config', 'additional_addresses'),
    },
  },
  'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
    fields: {
      explicit_http_config: message(
        'envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig',
      ),
      ...opaque(
        'common_http_protocol_options',
        'upstream_http_protocol_options',
        'use_downstream_protocol_config',
        'auto_config',
        'http_filters',
        'header_validation_config',
      ),
    },
    oneofs: [
      { members: ['explicit_http_config', 'use_downstream_protocol_config', 'auto_config'], required: true },
    ],
  },
  'envoy.extensions.upstreams.http.v3.HttpProtocolOptions.ExplicitHttpConfig': {
    fields: opaque('http_protocol_options', 'http2_protocol_options', 'http3_protocol_options'),
    oneofs: [
      {
        members: ['http_protocol_options', 'http2_protocol_options', 'http3_protocol_options'],
        required: true,
      },
    ],
  },
};

/** The filter names Envoy registers for the typed configs used here. */
export const filterTypes: Record<string, string> = {
  'envoy.filters.network.http_connection_manager':
    'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
  'envoy.filters.http.lua': 'envoy.extensions.filters.http.lua.v3.Lua',
  'envoy.filters.http.ext_proc': 'envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor',
  'envoy.filters.http.router': 'envoy.extensions.filters.http.router.v3.Router',
};

/** The header-map methods of Envoy's Lua filter API (`request_handle:headers()`). */
export const luaHeaderMethods = [
  'add',
  'get',
  'getAtIndex',
  'getNumValues',
  'remove',
  'replace',
  'setHttp1ReasonPhrase',
];

const typePrefix = 'type.googleapis.com/';

/** Every problem Envoy's config loading would report for `value` read as `type`; empty when none. */
export function validateEnvoy(value: unknown, type: string, path = ''): string[] {
  const schema = envoySchema[type];
  if (!schema) return [`${path || '.'}: no schema for ${type} (add it from the API reference)`];
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return [`${path || '.'}: ${type} must be an object`];
  }
  const object = value as Record<string, unknown>;
  const problems: string[] = [];
  for (const [name, fieldValue] of Object.entries(object)) {
    if (name === '@type') continue;
    const field = schema.fields[name];
    if (!field) {
      problems.push(`${path}.${name}: ${type} has no field '${name}'`);
      continue;
    }
    const items = field.repeated ? fieldValue : [fieldValue];
    if (field.repeated && !Array.isArray(fieldValue)) {
      problems.push(`${path}.${name}: a list is expected`);
      continue;
    }
    (items as unknown[]).forEach((item, index) => {
      const at = field.repeated ? `${path}.${name}[${index}]` : `${path}.${name}`;
      problems.push(...checkValue(item, field.type, at));
    });
  }
  for (const [name, field] of Object.entries(schema.fields)) {
    if (!field.required) continue;
    const present = object[name];
    if (present === undefined || present === '' || (Array.isArray(present) && present.length === 0)) {
      problems.push(`${path}.${name}: required by ${type}`);
    }
  }
  for (const oneof of schema.oneofs ?? []) {
    const set = oneof.members.filter((member) => object[member] !== undefined);
    if (set.length > 1) problems.push(`${path}: only one of ${set.join(', ')} may be set`);
    if (oneof.required && set.length === 0)
      problems.push(`${path}: one of ${oneof.members.join(', ')} is required`);
  }
  return problems;
}

function checkValue(value: unknown, type: FieldType, path: string): string[] {
  if (type === 'opaque') return [];
  if (type === 'string') return typeof value === 'string' ? [] : [`${path}: a string is expected`];
  if (type === 'bool') return typeof value === 'boolean' ? [] : [`${path}: true or false is expected`];
  if (type === 'uint32') {
    return Number.isInteger(value) && (value as number) >= 0 && (value as number) < 2 ** 32
      ? []
      : [`${path}: an unsigned 32-bit integer is expected`];
  }
  if (type === 'duration') {
    // google.protobuf.Duration's JSON form: seconds with up to nine fraction digits and "s".
    return typeof value === 'string' && /^-?\d+(\.\d{1,9})?s$/.test(value)
      ? []
      : [`${path}: a duration such as "5s" or "0.25s" is expected`];
  }
  if (type === 'any') {
    const url = (value as Record<string, unknown> | null)?.['@type'];
    if (typeof url !== 'string' || !url.startsWith(typePrefix)) {
      return [`${path}: '@type: ${typePrefix}<message>' is required`];
    }
    return validateEnvoy(value, url.slice(typePrefix.length), path);
  }
  if ('enum' in type) {
    return typeof value === 'string' && type.enum.includes(value)
      ? []
      : [`${path}: '${String(value)}' is not one of ${type.enum.join(', ')}`];
  }
  return validateEnvoy(value, type.message, path);
}
