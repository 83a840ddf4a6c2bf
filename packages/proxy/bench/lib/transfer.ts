// Large bodies through a proxy: sequential 8 MB uploads and downloads on one keep-alive connection.
import { Agent, request } from 'node:http';

export const smallBodyBytes = 100;
export const largeBodyBytes = 8 * 1024 * 1024;

export interface TransferResult {
  transfers: number;
  seconds: number;
  /** Megabytes (10^6 bytes) of body per second. */
  megabytesPerSecond: number;
}

const uploadBody = Buffer.alloc(largeBodyBytes, 'z');

/** `count` sequential transfers of 8 MB: POSTed to `url` ('up') or read from `url` ('down'). */
export async function transferLarge(
  url: string,
  direction: 'up' | 'down',
  count: number,
): Promise<TransferResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    await once(url, direction, agent); // warm-up: connection, JIT, buffers
    const started = performance.now();
    for (let i = 0; i < count; i++) await once(url, direction, agent);
    const seconds = (performance.now() - started) / 1000;
    return { transfers: count, seconds, megabytesPerSecond: (count * largeBodyBytes) / 1e6 / seconds };
  } finally {
    agent.destroy();
  }
}

function once(url: string, direction: 'up' | 'down', agent: Agent): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        agent,
        method: direction === 'up' ? 'POST' : 'GET',
        headers: direction === 'up' ? { 'content-length': largeBodyBytes } : {},
      },
      (res) => {
        let bytes = 0;
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
          if (direction === 'up') chunks.push(chunk);
        });
        res.on('end', () => {
          if (res.statusCode !== 200) reject(new Error(`${url} answered ${res.statusCode}`));
          else if (direction === 'down' && bytes !== largeBodyBytes)
            reject(new Error(`${url}: got ${bytes} bytes of ${largeBodyBytes}`));
          else if (direction === 'up' && !Buffer.concat(chunks).toString().includes(`${largeBodyBytes}`))
            reject(new Error(`${url}: the upstream did not receive the whole upload`));
          else resolve();
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(direction === 'up' ? uploadBody : undefined);
  });
}
