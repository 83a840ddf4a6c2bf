// The few messages of Envoy's external processing protocol (envoy.service.ext_proc.v3) the
// hasher reads and writes, by their documented field numbers:
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/service/ext_proc/v3/external_processor.proto
import { MessageWriter, readFields, wireType } from '../protobuf.ts';

export const processMethodPath = '/envoy.service.ext_proc.v3.ExternalProcessor/Process';

/** ProcessingRequest's `request` oneof, by field number; ProcessingResponse's matching `response`. */
const phases = {
  2: { name: 'requestHeaders', response: 1 },
  3: { name: 'responseHeaders', response: 2 },
  4: { name: 'requestBody', response: 3 },
  5: { name: 'responseBody', response: 4 },
  6: { name: 'requestTrailers', response: 5 },
  7: { name: 'responseTrailers', response: 6 },
} as const;

export type Phase = (typeof phases)[keyof typeof phases]['name'];

export interface HeaderEntry {
  key: string;
  value: string;
}

export type ProcessingRequest =
  | { phase: 'requestHeaders' | 'responseHeaders'; headers: HeaderEntry[]; endOfStream: boolean }
  | { phase: 'requestBody' | 'responseBody'; body: Buffer; endOfStream: boolean }
  | { phase: 'requestTrailers' | 'responseTrailers' }
  | { phase: 'none' };

/** HeaderValue: key = 1, value = 2, raw_value = 3 (Envoy fills raw_value; older ones value). */
function decodeHeaderValue(buffer: Buffer): HeaderEntry {
  let key = '';
  let value: string | undefined;
  let raw: Buffer | undefined;
  for (const field of readFields(buffer)) {
    if (field.wireType !== wireType.bytes) continue;
    if (field.number === 1) key = field.bytes.toString('latin1');
    else if (field.number === 2) value = field.bytes.toString('latin1');
    else if (field.number === 3) raw = field.bytes;
  }
  return { key: key.toLowerCase(), value: raw !== undefined ? raw.toString('latin1') : (value ?? '') };
}

/** HttpHeaders: headers = 1 (HeaderMap: headers = 1, repeated HeaderValue), end_of_stream = 3. */
function decodeHttpHeaders(buffer: Buffer): { headers: HeaderEntry[]; endOfStream: boolean } {
  const headers: HeaderEntry[] = [];
  let endOfStream = false;
  for (const field of readFields(buffer)) {
    if (field.number === 1 && field.wireType === wireType.bytes) {
      for (const entry of readFields(field.bytes)) {
        if (entry.number === 1 && entry.wireType === wireType.bytes)
          headers.push(decodeHeaderValue(entry.bytes));
      }
    } else if (field.number === 3 && field.wireType === wireType.varint) {
      endOfStream = field.varint !== 0;
    }
  }
  return { headers, endOfStream };
}

/** HttpBody: body = 1, end_of_stream = 2. */
function decodeHttpBody(buffer: Buffer): { body: Buffer; endOfStream: boolean } {
  let body: Buffer = Buffer.alloc(0);
  let endOfStream = false;
  for (const field of readFields(buffer)) {
    if (field.number === 1 && field.wireType === wireType.bytes) body = field.bytes;
    else if (field.number === 2 && field.wireType === wireType.varint) endOfStream = field.varint !== 0;
  }
  return { body, endOfStream };
}

export function decodeProcessingRequest(buffer: Buffer): ProcessingRequest {
  let request: ProcessingRequest = { phase: 'none' };
  for (const field of readFields(buffer)) {
    const phase = phases[field.number as keyof typeof phases];
    if (!phase || field.wireType !== wireType.bytes) continue;
    // A oneof: the last member on the wire wins.
    if (phase.name === 'requestHeaders' || phase.name === 'responseHeaders') {
      request = { phase: phase.name, ...decodeHttpHeaders(field.bytes) };
    } else if (phase.name === 'requestBody' || phase.name === 'responseBody') {
      request = { phase: phase.name, ...decodeHttpBody(field.bytes) };
    } else {
      request = { phase: phase.name };
    }
  }
  return request;
}

/** HeaderValueOption.append_action: OVERWRITE_IF_EXISTS_OR_ADD. */
const overwriteIfExistsOrAdd = 2;
/** ProcessingMode.BodySendMode: BUFFERED. */
export const bufferedBodyMode = 2;

export interface ProcessingResponse {
  /** The phase answered: the request's own. */
  phase: Phase;
  setHeaders?: HeaderEntry[];
  removeHeaders?: string[];
  /** ProcessingMode.request_body_mode to switch to (Envoy honours it with allow_mode_override). */
  requestBodyMode?: number;
}

/** HeaderMutation: set_headers = 1 (HeaderValueOption), remove_headers = 2. */
function headerMutation(set: HeaderEntry[], remove: string[]): MessageWriter {
  const mutation = new MessageWriter();
  for (const { key, value } of set) {
    // HeaderValueOption: header = 1, append_action = 3. HeaderValue: key, value and raw_value,
    // as Envoy of any version reads one or the other.
    const header = new MessageWriter().bytes(1, key).bytes(2, value).bytes(3, value);
    mutation.message(1, new MessageWriter().message(1, header).varint(3, overwriteIfExistsOrAdd));
  }
  for (const name of remove) mutation.bytes(2, name);
  return mutation;
}

export function encodeProcessingResponse(response: ProcessingResponse): Buffer {
  const number = Object.values(phases).find((p) => p.name === response.phase)!.response;
  const set = response.setHeaders ?? [];
  const remove = response.removeHeaders ?? [];
  const inner = new MessageWriter();
  if (set.length > 0 || remove.length > 0) {
    const mutation = headerMutation(set, remove);
    if (response.phase === 'requestTrailers' || response.phase === 'responseTrailers') {
      inner.message(1, mutation); // TrailersResponse.header_mutation = 1
    } else {
      // HeadersResponse / BodyResponse: response = 1 (CommonResponse: header_mutation = 2).
      inner.message(1, new MessageWriter().message(2, mutation));
    }
  }
  const message = new MessageWriter().message(number, inner);
  if (response.requestBodyMode !== undefined) {
    // ProcessingResponse.mode_override = 9 (ProcessingMode: request_body_mode = 3).
    message.message(9, new MessageWriter().varint(3, response.requestBodyMode));
  }
  return message.finish();
}
