// /users/{name}/server and /users/{name}/servers/{server_name}: start (with user options),
// stop, remove, and the progress event stream.

import type { UserRow } from '../db/rows.ts';
import * as spawnerDb from '../db/spawners.ts';
import { groupsOfUser } from '../db/users.ts';
import { HttpError, SpawnError } from '../errors.ts';
import type { JsonObject } from '../spawners/spawner.ts';
import { logName, type SpawnEvent } from '../spawns.ts';
import { type ApiContext, isObject, needsScope } from './context.ts';
import { readJson, sendEmpty } from './http.ts';
import { requireUser } from './users.ts';

function names(context: ApiContext): { user: string; server: string } {
  return { user: context.params[0]!, server: context.params[1] ?? '' };
}

function target(context: ApiContext, user: string, server: string) {
  return {
    user,
    server: `${user}/${server}`,
    userGroups: async () => {
      const row = await context.hub.db.get<{ id: number }>('SELECT id FROM users WHERE name = ?', [user]);
      return row ? groupsOfUser(context.hub.db, row.id) : [];
    },
  };
}

export async function startServer(context: ApiContext): Promise<void> {
  const { user: userName, server } = names(context);
  await needsScope(context, ['servers'], target(context, userName, server));
  const { hub } = context;
  const { config, db } = hub;
  const user = await requireUser(context, userName);
  if (server) {
    if (!config.allowNamedServers) throw new HttpError(400, 'Named servers are not enabled.');
    if (server.includes('/'))
      throw new HttpError(400, `Invalid server_name (may not contain '/'): ${server}`);
  }
  const body = await readJson(context.req);
  if (body !== undefined && !isObject(body)) throw new HttpError(400, 'user options must be a JSON dict');
  // DockerSpawner's check_allowed answers 400 (an image outside allowed_images) before anything starts.
  const refused = hub.spawns.refusesUserOptions((body ?? {}) as JsonObject);
  if (refused) throw new HttpError(400, refused);
  let row = await spawnerDb.findSpawner(db, user.id, server);
  if (row && hub.spawns.isStuck(row)) row = await hub.spawns.recover(user, row);
  if (server && !row && config.namedServerLimitPerUser > 0) {
    if ((await spawnerDb.countNamedSpawners(db, user.id)) >= config.namedServerLimitPerUser) {
      throw new HttpError(
        400,
        `User ${userName} already has the maximum of ${config.namedServerLimitPerUser} named servers.  One must be deleted before a new server can be created`,
      );
    }
  }
  row ??= await spawnerDb.ensureSpawner(db, user.id, server);
  const name = logName(userName, server);
  if (row.pending === 'spawn') {
    sendEmpty(context.res, 202);
    return;
  }
  if (row.pending) throw new HttpError(400, `${name} is pending ${row.pending}`);
  if (row.url !== null) {
    const status = await hub.spawns.poll(user, row);
    if (status === null) throw new HttpError(400, `${name} is already running`);
    await hub.spawns.stopped(user, row);
  }
  if (
    config.concurrentSpawnLimit > 0 &&
    (await spawnerDb.countPendingSpawns(db)) >= config.concurrentSpawnLimit
  ) {
    hub.metrics.spawnDuration.labels('throttled').observe(0);
    const retry = 30 + Math.floor(Math.random() * 30);
    throw new HttpError(
      429,
      `Too many users trying to log in right now. Try again in ${Math.ceil(retry / 10)}0 seconds.`,
      { 'retry-after': String(retry) },
    );
  }
  if (config.activeServerLimit > 0 && (await spawnerDb.countActive(db)).running >= config.activeServerLimit) {
    hub.metrics.spawnDuration.labels('too-many-users').observe(0);
    throw new HttpError(429, 'Active user limit exceeded. Try again in a few minutes.');
  }
  if (!(await spawnerDb.markSpawnPending(db, row.id, JSON.stringify(body ?? {}), hub.spawns.owner))) {
    // Another request (or hub process) claimed it first: it is pending now.
    sendEmpty(context.res, 202);
    return;
  }
  row = (await spawnerDb.findSpawnerById(db, row.id))!;
  hub.log.info({ user: userName, server }, 'spawning server');
  const done = hub.spawns.start(user, row);
  let timer: NodeJS.Timeout | undefined;
  const slow = new Promise<'slow'>((resolve) => {
    timer = setTimeout(() => resolve('slow'), config.slowSpawnTimeoutMs);
  });
  try {
    const outcome = await Promise.race([done.then(() => 'done' as const), slow]);
    sendEmpty(context.res, outcome === 'done' ? 201 : 202);
  } catch (error) {
    // JupyterHub answers a fast failure with a 500; ours says why.
    throw new HttpError(500, `Spawn failed: ${error instanceof SpawnError ? error.message : String(error)}`);
  } finally {
    clearTimeout(timer);
  }
}

export async function stopServer(context: ApiContext): Promise<void> {
  const { user: userName, server } = names(context);
  await needsScope(context, ['delete:servers'], target(context, userName, server));
  const { hub } = context;
  const user = await requireUser(context, userName);
  const body = await readJson(context.req);
  const remove = isObject(body) && body.remove === true;
  let row = await spawnerDb.findSpawner(hub.db, user.id, server);
  if (row && hub.spawns.isStuck(row)) row = await hub.spawns.recover(user, row);
  if (server) {
    if (!hub.config.allowNamedServers) throw new HttpError(400, 'Named servers are not enabled.');
    if (!row) throw new HttpError(404, `${userName} has no server named '${server}'`);
  } else if (remove) {
    throw new HttpError(400, 'Cannot delete the default server');
  }
  if (!row) {
    sendEmpty(context.res, 204);
    return;
  }
  const name = logName(userName, server);
  if (row.pending === 'stop') {
    sendEmpty(context.res, 202);
    return;
  }
  if (row.pending) throw new HttpError(400, `${name} is pending ${row.pending}, please wait`);
  let stopping: Promise<void> | undefined;
  if (row.url !== null && (await spawnerDb.markStopPending(hub.db, row.id, hub.spawns.owner))) {
    stopping = hub.spawns.stop(user, row).then(async () => {
      if (remove) await removeServer(hub, user, row.id);
    });
  } else if (row.url !== null) {
    // Another request (or hub process, or the culler) claimed the stop between our read and our
    // claim: it is still stopping, so 202 as JupyterHub answers a stop of a stopping server —
    // never a 204 before it has stopped, and never a second stop.
    const now = await spawnerDb.findSpawnerById(hub.db, row.id);
    if (now?.pending === 'stop') {
      sendEmpty(context.res, 202);
      return;
    }
    if (now?.pending) throw new HttpError(400, `${name} is pending ${now.pending}, please wait`);
    if (remove && now) await removeServer(hub, user, row.id);
  } else if (remove) {
    await removeServer(hub, user, row.id);
  }
  if (stopping) {
    let timer: NodeJS.Timeout | undefined;
    const slow = new Promise<'slow'>((resolve) => {
      timer = setTimeout(() => resolve('slow'), hub.config.slowSpawnTimeoutMs);
    });
    const outcome = await Promise.race([stopping.then(() => 'done' as const), slow]);
    clearTimeout(timer);
    sendEmpty(context.res, outcome === 'done' ? 204 : 202);
    return;
  }
  sendEmpty(context.res, 204);
}

export async function progress(context: ApiContext): Promise<void> {
  const { user: userName, server } = names(context);
  await needsScope(context, ['read:servers'], target(context, userName, server));
  const { hub, res, req } = context;
  const user = await requireUser(context, userName);
  const row = await spawnerDb.findSpawner(hub.db, user.id, server);
  if (!row) throw new HttpError(404, 'Not Found');
  const send = (event: SpawnEvent) => {
    // A database poll still in flight when the stream ended must not write after its end.
    if (!res.writableEnded) res.write(`data: ${JSON.stringify(event)}\n\n`);
  };
  const open = () => {
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
    });
  };
  if (row.ready === 1 && row.url !== null && row.pending === null) {
    open();
    send(hub.spawns.readyEvent(userName, server));
    res.end();
    return;
  }
  if (row.pending !== 'spawn') {
    if (row.failure) {
      open();
      send({ progress: 100, failed: true, message: `Spawn failed: ${row.failure}` });
      res.end();
      return;
    }
    throw new HttpError(400, `${logName(userName, server)} is not starting...`);
  }
  open();
  const seen = hub.spawns.eventsOf(row.id) ?? parseProgress(row.progress);
  for (const event of seen) send(event);
  let sent = seen.length;
  if (seen.some((e) => e.ready || e.failed)) {
    res.end();
    return;
  }
  await new Promise<void>((resolve) => {
    const channel = `progress:${row.id}`;
    const keepalive = setInterval(() => res.write('\n\n'), 8000);
    let polling = false;
    // A spawn run by another hub process (replica): follow it through the database, where that
    // process saves every progress event.
    const watch = hub.spawns.eventsOf(row.id)
      ? undefined
      : setInterval(async () => {
          if (polling || res.writableEnded) return;
          polling = true;
          const current = await spawnerDb.findSpawnerById(hub.db, row.id).catch(() => undefined);
          polling = false;
          if (current?.pending === 'spawn') {
            const events = parseProgress(current.progress);
            for (const event of events.slice(sent)) send(event);
            sent = Math.max(sent, events.length);
            return;
          }
          if (!current) return;
          if (current.ready === 1) send(hub.spawns.readyEvent(userName, server));
          else
            send({
              progress: 100,
              failed: true,
              message: `Spawn failed: ${current.failure ?? 'unknown error'}`,
            });
          finish();
        }, 500);
    const onEvent = (event: SpawnEvent) => {
      send(event);
      if (event.ready || event.failed) finish();
    };
    const finish = () => {
      clearInterval(keepalive);
      if (watch) clearInterval(watch);
      hub.spawns.events.off(channel, onEvent);
      req.off('close', finish);
      if (!res.writableEnded) res.end();
      resolve();
    };
    hub.spawns.events.on(channel, onEvent);
    req.on('close', finish);
  });
}

/** The progress events saved so far; a row written by an older hub may hold anything. */
function parseProgress(text: string): SpawnEvent[] {
  try {
    const events: unknown = JSON.parse(text);
    return Array.isArray(events) ? (events as SpawnEvent[]) : [];
  } catch {
    return [];
  }
}

/** A named server removed for good: JupyterHub's _delete_spawner (delete_forever, then the row). */
async function removeServer(hub: ApiContext['hub'], user: UserRow, id: number): Promise<void> {
  const row = await spawnerDb.findSpawnerById(hub.db, id);
  if (!row) return;
  if (!(await hub.spawns.deleteForever(user, row)))
    throw new HttpError(400, `${user.name}'s server ${row.name} is in the process of starting, please wait.`);
  await spawnerDb.deleteSpawner(hub.db, id);
}
