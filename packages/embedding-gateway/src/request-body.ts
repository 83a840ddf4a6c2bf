// The body of POST /v1/embeddings read as FastAPI reads `body: RootModel[Mapping[str, Any]]`:
// JSON unless the Content-Type names another type, any JSON object accepted, and FastAPI's
// 422/400 answers for everything else, so clients that branch on them see no change.
import { RequestRejectedError } from './errors.ts';
import {
  dumpPythonJson,
  fromPlain,
  isPyObject,
  PyJsonDecodeError,
  type PyObject,
  type PyValue,
  parsePythonJsonBytes,
} from './python-json.ts';

/** FastAPI's `JSONResponse`: compact separators, UTF-8 rather than `\uXXXX`. */
export function fastApiJson(value: unknown): string {
  return dumpPythonJson(fromPlain(value), { itemSeparator: ',', keySeparator: ':', ensureAscii: false });
}

/** True when FastAPI would parse the body as JSON: no Content-Type, or application/json or +json. */
export function isJsonContentType(contentType: string | undefined): boolean {
  if (contentType === undefined) return true;
  const type = contentType.split(';', 1)[0]!.trim().toLowerCase();
  const slash = type.indexOf('/');
  if (slash <= 0 || type.indexOf('/', slash + 1) !== -1) return false;
  const subtype = type.slice(slash + 1);
  return type.slice(0, slash) === 'application' && (subtype === 'json' || subtype.endsWith('+json'));
}

const missing = () =>
  new RequestRejectedError(
    422,
    [{ type: 'missing', loc: ['body'], msg: 'Field required', input: null }],
    'the request has no body; send a JSON object',
  );

const notAnObject = (input: PyValue) =>
  new RequestRejectedError(
    422,
    [{ type: 'dict_type', loc: ['body'], msg: 'Input should be a valid dictionary', input }],
    'the body is not a JSON object',
  );

/** The request's JSON object, or a RequestRejectedError carrying FastAPI's answer. */
export function readRequestBody(contentType: string | undefined, body: Buffer): PyObject {
  if (body.length === 0) throw missing();
  if (!isJsonContentType(contentType)) throw notAnObject(body.toString('utf8'));
  let value: PyValue;
  try {
    value = parsePythonJsonBytes(body);
  } catch (error) {
    if (error instanceof PyJsonDecodeError) {
      throw new RequestRejectedError(
        422,
        [
          {
            type: 'json_invalid',
            loc: ['body', error.position],
            msg: 'JSON decode error',
            input: {},
            ctx: { error: error.message },
          },
        ],
        `the body is not JSON: ${error.message} at ${error.position}`,
      );
    }
    throw new RequestRejectedError(400, 'There was an error parsing the body', (error as Error).message);
  }
  if (value === null) throw missing();
  if (!isPyObject(value)) throw notAnObject(value);
  return value;
}
