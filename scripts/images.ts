// `npm run images`: builds every image of the workspace on the local Debian base, through the
// runtime's test engine (its own dockerd, its content-hash cache: an unchanged image is only
// re-tagged), and writes their sizes into deploy/compose/README.md. The tests call
// `buildImages` for the images they run, so a warm test run builds nothing.
import { spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  linkSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { baseImage, buildImage, type Dockerd, type ImageInfo, startDockerd } from '@seahorse/runtime/testing';

export const workspaceRoot = fileURLToPath(new URL('..', import.meta.url));

/** The workspace packages that ship an image, each built from packages/<name>/Dockerfile. */
export const packageImages = ['proxy', 'hub', 'metrics-proxy-hook', 'embedding-gateway'] as const;
export type ImageName = 'node' | (typeof packageImages)[number] | 'singleuser' | 'postgres';
/** All of them; `postgres` is only the compose test's stand-in for the official postgres:15. */
export const imageNames: readonly ImageName[] = ['node', ...packageImages, 'singleuser', 'postgres'];

/** The tag each image gets on the local engine. */
export const imageTags: Readonly<Record<ImageName, string>> = {
  node: 'seahorse/node:24-bookworm-local',
  proxy: 'seahorse/proxy:local',
  hub: 'seahorse/hub:local',
  'metrics-proxy-hook': 'seahorse/metrics-proxy-hook:local',
  'embedding-gateway': 'seahorse/embedding-gateway:local',
  singleuser: 'seahorse/singleuser:local',
  postgres: 'seahorse/postgres:15-local',
};

export interface BuiltImage extends ImageInfo {
  name: ImageName;
  /** Bytes, as `docker images` reports. */
  size: number;
}

/** What of the workspace an image's build copies; tests, benches and build output stay out. */
function keep(source: string): boolean {
  const name = basename(source);
  if (['node_modules', 'dist', 'test', 'bench', 'bench-results', 'Dockerfile'].includes(name)) return false;
  return !name.endsWith('.test.ts') && !name.endsWith('.tsbuildinfo');
}

/**
 * A build context holding only what packages/<name>/Dockerfile copies, so the content hash of
 * one image moves only when its own inputs do (a hub change leaves the proxy image cached).
 */
function stagePackageContext(engine: Dockerd, name: (typeof packageImages)[number]): string {
  // One directory per process: test files build concurrently, and a context must not change
  // while another process hashes or sends it. The content hash, not the path, names the image.
  const context = join(engine.dir, 'contexts', `image-${name}-${process.pid}`);
  rmSync(context, { recursive: true, force: true });
  mkdirSync(context, { recursive: true });
  for (const file of ['package.json', 'package-lock.json', 'tsconfig.base.json', '.dockerignore']) {
    cpSync(join(workspaceRoot, file), join(context, file));
  }
  cpSync(join(workspaceRoot, 'deploy/images/ca'), join(context, 'deploy/images/ca'), { recursive: true });
  for (const pkg of ['runtime', name]) {
    cpSync(join(workspaceRoot, 'packages', pkg), join(context, 'packages', pkg), {
      recursive: true,
      filter: keep,
    });
  }
  cpSync(join(workspaceRoot, 'packages', name, 'Dockerfile'), join(context, 'Dockerfile'));
  return context;
}

/** npm's own directory (lib/node_modules/npm) of the npm on PATH. */
function npmDirectory(): string {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const cli = join(dir, 'npm');
    if (dir && existsSync(cli)) return dirname(dirname(realpathSync(cli)));
  }
  throw new Error('no npm on PATH: the local node image copies the host npm');
}

/** A hard link when the filesystems allow it (the Node binary is 120 MB), else a copy. */
function linkOrCopy(source: string, target: string): void {
  mkdirSync(dirname(target), { recursive: true });
  try {
    linkSync(source, target);
  } catch {
    cpSync(source, target);
  }
}

/** The stand-in for node:24-bookworm-slim: the local base plus this Node binary and npm. */
function stageNodeContext(engine: Dockerd): string {
  const context = join(engine.dir, 'contexts', `image-node-${process.pid}`);
  rmSync(context, { recursive: true, force: true });
  linkOrCopy(realpathSync(process.execPath), join(context, 'bin/node'));
  cpSync(npmDirectory(), join(context, 'lib/npm'), { recursive: true });
  cpSync(join(workspaceRoot, 'deploy/images/node-base/Dockerfile'), join(context, 'Dockerfile'));
  return context;
}

async function sizeOf(engine: Dockerd, tag: string): Promise<number> {
  const res = await engine.request('GET', `/images/${encodeURIComponent(tag)}/json`);
  if (res.status !== 200) throw new Error(`inspecting ${tag}: ${res.status}`);
  return res.json<{ Size: number }>().Size;
}

/**
 * Builds the named images (and what they are built on) on `engine`; unchanged ones come from
 * the cache. Order matters only through the node image, which the package images start from.
 */
export async function buildImages(
  engine: Dockerd,
  names: readonly ImageName[] = imageNames,
  onImage: (image: BuiltImage) => void = () => {},
): Promise<Map<ImageName, BuiltImage>> {
  const built = new Map<ImageName, BuiltImage>();
  const base = await baseImage(engine);
  const record = async (name: ImageName, info: ImageInfo) => {
    const image = { ...info, name, size: await sizeOf(engine, info.tag) };
    built.set(name, image);
    onImage(image);
    return image;
  };
  const wantsNode = names.some(
    (name) => name === 'node' || (packageImages as readonly string[]).includes(name),
  );
  const fromStaged = async (context: string, tag: string, args: Record<string, string>) => {
    try {
      return await buildImage(engine, context, 'Dockerfile', tag, args);
    } finally {
      rmSync(context, { recursive: true, force: true });
    }
  };
  if (wantsNode) {
    await record(
      'node',
      await fromStaged(stageNodeContext(engine), imageTags.node, { BASE_IMAGE: base.tag }),
    );
  }
  for (const name of packageImages) {
    if (!names.includes(name)) continue;
    const context = stagePackageContext(engine, name);
    await record(name, await fromStaged(context, imageTags[name], { BASE_IMAGE: imageTags.node }));
  }
  if (names.includes('singleuser')) {
    const context = join(workspaceRoot, 'deploy/compose/singleuser');
    await record(
      'singleuser',
      await buildImage(engine, context, 'Dockerfile', imageTags.singleuser, {
        BASE_IMAGE: base.tag,
        INSTALL_FROM: 'debian',
      }),
    );
  }
  if (names.includes('postgres')) {
    const context = join(workspaceRoot, 'deploy/images/postgres');
    await record(
      'postgres',
      await buildImage(engine, context, 'Dockerfile', imageTags.postgres, { BASE_IMAGE: base.tag }),
    );
  }
  return built;
}

const sources: Readonly<Record<ImageName, string>> = {
  node: 'deploy/images/node-base/Dockerfile',
  proxy: 'packages/proxy/Dockerfile',
  hub: 'packages/hub/Dockerfile',
  'metrics-proxy-hook': 'packages/metrics-proxy-hook/Dockerfile',
  'embedding-gateway': 'packages/embedding-gateway/Dockerfile',
  singleuser: 'deploy/compose/singleuser/Dockerfile',
  postgres: 'deploy/images/postgres/Dockerfile',
};

const megabytes = (bytes: number) => `${(bytes / 1e6).toFixed(0)} MB`;

/** The Markdown table of image sizes between the markers in deploy/compose/README.md. */
export function sizeTable(images: ReadonlyMap<ImageName, BuiltImage>, baseSize: number): string {
  const nodeSize = images.get('node')?.size ?? 0;
  const rows = [...images.values()].map((image) => {
    const below = (packageImages as readonly string[]).includes(image.name) ? nodeSize : baseSize;
    return `| \`${image.tag}\` | \`${sources[image.name]}\` | ${megabytes(image.size)} | ${megabytes(image.size - below)} |`;
  });
  return [
    '| Image | Dockerfile | Size | Added to its base |',
    '| --- | --- | ---: | ---: |',
    `| local Debian base (mmdebstrap minbase) | — | ${megabytes(baseSize)} | — |`,
    ...rows,
  ].join('\n');
}

const readme = join(workspaceRoot, 'deploy/compose/README.md');
const begin = '<!-- image sizes: begin (npm run images) -->';
const end = '<!-- image sizes: end -->';

export function writeSizeTable(table: string, file = readme): void {
  const text = readFileSync(file, 'utf8');
  const from = text.indexOf(begin);
  const to = text.indexOf(end);
  if (from === -1 || to < from)
    throw new Error(`${relative(workspaceRoot, file)} lacks the markers ${begin} … ${end}`);
  writeFileSync(file, `${text.slice(0, from + begin.length)}\n${table}\n${text.slice(to)}`);
  // The table in the project's Markdown format, so `npm run check` stays green after a run.
  const biome = join(workspaceRoot, 'node_modules/.bin/biome');
  if (existsSync(biome))
    spawnSync(biome, ['format', '--write', file], { cwd: workspaceRoot, stdio: 'ignore' });
}

async function main(): Promise<void> {
  const started = Date.now();
  const engine = await startDockerd();
  try {
    const images = await buildImages(engine, imageNames, (image) => {
      const how = image.built ? `built in ${image.seconds.toFixed(1)} s` : 'cached';
      process.stdout.write(`${image.tag.padEnd(36)} ${megabytes(image.size).padStart(8)}  ${how}\n`);
    });
    const base = await baseImage(engine);
    const table = sizeTable(images, await sizeOf(engine, base.tag));
    writeSizeTable(table);
    process.stdout.write(
      `${images.size} images in ${((Date.now() - started) / 1000).toFixed(1)} s; sizes written to deploy/compose/README.md\n`,
    );
  } finally {
    await engine.stop();
  }
}

if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((error: unknown) => {
    process.stderr.write(`images: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  });
}
