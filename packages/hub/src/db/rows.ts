// Row shapes as both dialects return them, and small helpers shared by the query modules.
import type { Queryable } from './database.ts';

export interface UserRow {
  id: number;
  name: string;
  admin: number;
  created: string;
  last_activity: string | null;
  cookie_id: string;
  auth_state: string | null;
}

export interface SpawnerRow {
  id: number;
  user_id: number;
  name: string;
  state: string;
  url: string | null;
  ready: number;
  pending: string | null;
  pending_since: string | null;
  /** The replica (Leadership.replicaId) running the pending action; null when none is pending. */
  pending_owner: string | null;
  started: string | null;
  last_activity: string | null;
  user_options: string;
  progress: string;
  failure: string | null;
}

export interface TokenRow {
  id: number;
  hashed: string;
  prefix: string;
  user_id: number | null;
  service_id: number | null;
  spawner_id: number | null;
  client_id: string;
  session_id: string | null;
  note: string | null;
  scopes: string;
  created: string;
  expires_at: string | null;
  last_activity: string | null;
}

export interface ServiceRow {
  id: number;
  name: string;
  admin: number;
  url: string | null;
  info: string;
  display: number;
  oauth_client_id: string | null;
}

export interface GroupRow {
  id: number;
  name: string;
  properties: string;
}

export interface RoleRow {
  id: number;
  name: string;
  description: string | null;
  scopes: string;
}

export function nowIso(): string {
  return new Date().toISOString();
}

/** `column IN (list)` with one parameter in either dialect, so each query is prepared once. */
export function inList(db: Queryable, column: string): string {
  return db.dialect === 'sqlite'
    ? `${column} IN (SELECT value FROM json_each(?))`
    : `${column} = ANY(SELECT json_array_elements_text(?::json)::int)`;
}

export function inTextList(db: Queryable, column: string): string {
  return db.dialect === 'sqlite'
    ? `${column} IN (SELECT value FROM json_each(?))`
    : `${column} = ANY(SELECT json_array_elements_text(?::json))`;
}

export function listParam(values: Array<string | number>): string {
  return JSON.stringify(values);
}
