import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RouteTable } from './routes.ts';
import type { RouteSource, RouteWriter } from './store.ts';
import { WorkerRouteSource } from './workers.ts';

test('a worker mirrors the table the primary sends and is ready once it has the snapshot', async () => {
  const source: RouteSource = new WorkerRouteSource();
  const table = new RouteTable();
  await source.start(table);
  assert.equal(source.status, 'waiting for the primary');
  // What the primary's IPC messages look like when they reach the worker's process.
  process.emit(
    'message',
    {
      seahorse: 'snapshot',
      routes: [{ path: '/a', data: { target: 'http://127.0.0.1:1' }, lastActivity: 5 }],
    },
    undefined,
  );
  await source.ready();
  assert.equal(source.status, 'in sync');
  assert.equal(table.get('/a')?.lastActivity, 5);
  process.emit('message', { seahorse: 'change', change: { type: 'delete', path: '/a' } }, undefined);
  assert.equal(table.get('/a'), undefined);
  await source.close();
});

test('a worker has no write side: the type system, not a throw, keeps workers from writing', () => {
  const worker = new WorkerRouteSource();
  // @ts-expect-error a worker is a RouteSource only; the primary's store is the writer
  const writer: RouteWriter = worker;
  assert.equal('set' in writer, false);
  assert.equal('delete' in writer, false);
});
