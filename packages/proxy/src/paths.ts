// Path arithmetic for forwarding: what the router looks up and what the target receives.
// Pure functions on strings; the fast path (no dots, no escapes) allocates nothing new.
import { BadRequestPath } from './errors.ts';

/**
 * Resolves `.` and `..` segments (also percent-encoded ones) in a raw request path, as browsers
 * and CHP 5 do, so the route chosen and the path the target sees agree. Returns the input when
 * there is nothing to resolve.
 */
export function removeDotSegments(rawPath: string): string {
  if (rawPath.indexOf('/.') === -1 && !/%2e/i.test(rawPath)) return rawPath;
  const input = rawPath.split('/');
  const output: string[] = [];
  for (let i = 0; i < input.length; i++) {
    const segment = input[i]!;
    const decoded = segment.length <= 6 ? segment.replace(/%2e/gi, '.') : segment;
    const last = i === input.length - 1;
    if (decoded === '.') {
      if (last) output.push('');
    } else if (decoded === '..') {
      if (output.length > 1) output.pop();
      if (last) output.push('');
    } else {
      output.push(segment);
    }
  }
  const joined = output.join('/');
  return joined.charCodeAt(0) === 47 ? joined : `/${joined}`;
}

/** The decoded path the router matches; throws BadRequestPath on invalid escapes. */
export function lookupPath(rawPath: string): string {
  if (rawPath.indexOf('%') === -1) return rawPath;
  try {
    return decodeURIComponent(rawPath);
  } catch {
    throw new BadRequestPath(`invalid percent-encoding in request path`);
  }
}

/** Number of segments in a normalised route key (`/` has none). */
export function countSegments(prefix: string): number {
  if (prefix === '/') return 0;
  let count = 0;
  for (let i = 0; i < prefix.length; i++) if (prefix.charCodeAt(i) === 47) count++;
  return count;
}

/**
 * `rawPath` without its first `segments` segments. Cuts by segments, not by characters, so an
 * escaped prefix (`/enc%40x` for the route `/enc@x`) is removed whole.
 */
export function stripSegments(rawPath: string, segments: number): string {
  let at = 0;
  for (let i = 0; i < segments; i++) {
    const next = rawPath.indexOf('/', at + 1);
    if (next === -1) return '';
    at = next;
  }
  return rawPath.slice(at);
}

/**
 * Joins the target's path and query with the forwarded request path and query, merging the
 * slash at the boundary; queries are joined with `&`, the target's first. An empty `path`
 * forwards the target's path as written (a request for `/` itself passes '' here).
 */
export function joinTarget(targetPath: string, targetQuery: string, path: string, query: string): string {
  let joined: string;
  if (targetPath === '') joined = path === '' ? '/' : path;
  else if (path === '') joined = targetPath;
  else if (targetPath.endsWith('/')) joined = targetPath + (path.charCodeAt(0) === 47 ? path.slice(1) : path);
  else joined = path.charCodeAt(0) === 47 ? targetPath + path : `${targetPath}/${path}`;
  const fullQuery = targetQuery && query ? `${targetQuery}&${query}` : targetQuery || query;
  return fullQuery ? `${joined}?${fullQuery}` : joined;
}
