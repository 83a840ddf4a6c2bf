// The fake OpenAI upstream in a process of its own, so its CPU is not the gateway's.
import { startFakeOpenAI } from '../test/fake-openai.ts';

const upstream = await startFakeOpenAI();
process.stdout.write(`${JSON.stringify({ url: upstream.url })}\n`);
process.on('SIGTERM', () => {
  upstream.close().then(() => process.exit(0));
});
