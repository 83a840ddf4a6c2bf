import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UsageError } from './errors.ts';
import { type FlagSpec, formatHelp, parseDuration, parseFlags } from './flags.ts';

const specs: FlagSpec[] = [
  { name: 'port', kind: 'integer', arg: '<n>', help: 'port', default: 8000, min: 0, max: 65535, env: 'PORT' },
  { name: 'ip', kind: 'string', arg: '<ip>', help: 'address' },
  { name: 'x-forward', kind: 'boolean', default: true, help: 'add X-Forwarded-*' },
  { name: 'insecure', kind: 'boolean', help: 'skip TLS checks' },
  { name: 'custom-header', kind: 'list', arg: '<header>', help: 'header' },
  {
    name: 'log-level',
    kind: 'string',
    arg: '<level>',
    default: 'info',
    choices: ['debug', 'info'],
    help: 'level',
  },
  { name: 'lameduck', kind: 'duration', arg: '<d>', default: '1s', help: 'lameduck' },
  { name: 'version', short: 'V', kind: 'boolean', help: 'version' },
];

test('flags win over env, env over defaults', () => {
  assert.equal(parseFlags(specs, [], {}).integer('port'), 8000);
  assert.equal(parseFlags(specs, [], { PORT: '9000' }).integer('port'), 9000);
  assert.equal(parseFlags(specs, ['--port', '7000'], { PORT: '9000' }).integer('port'), 7000);
  assert.equal(parseFlags(specs, ['--port=7001'], {}).integer('port'), 7001);
});

test('--no-<flag> turns a default-true boolean off', () => {
  assert.equal(parseFlags(specs, [], {}).boolean('x-forward'), true);
  assert.equal(parseFlags(specs, ['--no-x-forward'], {}).boolean('x-forward'), false);
  assert.equal(parseFlags(specs, ['--insecure'], {}).boolean('insecure'), true);
  assert.equal(parseFlags(specs, ['-V'], {}).boolean('version'), true);
});

test('repeatable flags collect every value in order', () => {
  const flags = parseFlags(specs, ['--custom-header', 'A: 1', '--custom-header', 'B: 2'], {});
  assert.deepEqual(flags.list('custom-header'), ['A: 1', 'B: 2']);
});

test('durations accept Go syntax and bare seconds', () => {
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('1m30s'), 90_000);
  assert.equal(parseDuration('2'), 2000);
  assert.equal(parseDuration('soon'), undefined);
  assert.equal(parseFlags(specs, [], {}).duration('lameduck'), 1000);
});

test('mistakes name the flag and the accepted form', () => {
  const cases: Array<[string[], NodeJS.ProcessEnv, RegExp]> = [
    [['--port', 'abc'], {}, /--port expects an integer from 0 to 65535, got 'abc'/],
    [['--port', '70000'], {}, /--port expects an integer from 0 to 65535/],
    [[], { PORT: 'x' }, /PORT expects an integer/],
    [['--bogus'], {}, /unknown flag '--bogus'/],
    [['--no-port'], {}, /unknown flag '--no-port'/],
    [['--ip'], {}, /--ip needs <ip>/],
    [['--log-level', 'loud'], {}, /--log-level expects one of debug, info, got 'loud'/],
    [['--lameduck', 'soon'], {}, /--lameduck expects a duration/],
    [['stray'], {}, /unexpected argument 'stray'/],
  ];
  for (const [argv, env, message] of cases) {
    assert.throws(
      () => parseFlags(specs, argv, env),
      (error: unknown) => {
        assert.ok(error instanceof UsageError);
        assert.match(error.message, message);
        return true;
      },
    );
  }
});

test('help lists every flag with its default and environment variable', () => {
  const help = formatHelp('tool [options]', specs);
  assert.match(help, /--port <n>\s+port \(default: 8000; env: PORT\)/);
  assert.match(help, /--no-x-forward/);
  assert.match(help, /-V, --version/);
});

test('a spec declared as const types each flag from its kind and default', () => {
  const typed = [
    { name: 'port', kind: 'integer', help: 'port', default: 8000 },
    { name: 'api-port', kind: 'integer', help: 'api port' },
    { name: 'grace', kind: 'duration', help: 'grace', default: '30s' },
    { name: 'level', kind: 'string', help: 'level', default: 'info', choices: ['debug', 'info'] },
    { name: 'ip', kind: 'string', help: 'ip' },
    { name: 'insecure', kind: 'boolean', help: 'insecure' },
  ] as const satisfies readonly FlagSpec[];
  const flags = parseFlags(typed, ['--level', 'debug'], {});
  // Each annotation below is checked by tsc (npm run check): a default makes the value defined.
  const port: number = flags.integer('port');
  const grace: number = flags.duration('grace');
  const level: 'debug' | 'info' = flags.string('level');
  const apiPort: number | undefined = flags.integer('api-port');
  const ip: string | undefined = flags.string('ip');
  assert.deepEqual([port, grace, level, apiPort, ip], [8000, 30_000, 'debug', undefined, undefined]);
  assert.equal(flags.boolean('insecure'), false);
  // @ts-expect-error a flag without a default may be absent
  const mustBeSet: number = flags.integer('api-port');
  // @ts-expect-error 'ip' is a string flag, not an integer one
  flags.integer('ip');
  // @ts-expect-error names are checked against the specs
  flags.has('no-such-flag');
  assert.equal(mustBeSet, undefined);
});
