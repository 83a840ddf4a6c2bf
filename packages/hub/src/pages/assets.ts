// The pages' one stylesheet and one script (live progress), served by the hub from memory with
// a content hash as ETag. Colours meet WCAG AA contrast (4.5:1 for text) on their backgrounds.
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { securityHeaders } from './html.ts';

export const stylesheet = `
:root{--fg:#1b1f24;--muted:#4d5560;--bg:#fff;--panel:#f4f6f8;--line:#c9d1d9;--accent:#0b5cad;--accent-fg:#fff;--danger:#b3261e;--ok:#1a7f37;font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;line-height:1.5;color:var(--fg);background:var(--bg)}
*{box-sizing:border-box}
body{margin:0}
.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:1rem;background:var(--bg);padding:.5rem;z-index:1}
header{display:flex;flex-wrap:wrap;gap:1rem;align-items:center;justify-content:space-between;padding:.75rem 1.5rem;border-bottom:1px solid var(--line);background:var(--panel)}
header nav{display:flex;flex-wrap:wrap;gap:1rem;align-items:center}
header ul{display:flex;gap:1rem;list-style:none;margin:0;padding:0}
.brand{font-weight:700;color:var(--fg);text-decoration:none}
main{max-width:60rem;margin:1.5rem auto;padding:0 1.5rem}
main:focus{outline:none}
h1{font-size:1.6rem;margin:.5rem 0 1rem}h2{font-size:1.2rem;margin:1.5rem 0 .5rem}
a{color:var(--accent)}
.muted,.who{color:var(--muted)}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid var(--line);vertical-align:middle}
th{font-weight:600}
form.inline{display:inline}
fieldset{border:1px solid var(--line);border-radius:6px;padding:.75rem 1rem;margin:0 0 1rem}
legend{font-weight:600;padding:0 .25rem}
label{display:block;font-weight:600;margin:.5rem 0 .25rem}
label.option{font-weight:400;display:flex;gap:.5rem;align-items:flex-start;padding:.5rem;border:1px solid var(--line);border-radius:6px;margin:.5rem 0}
label.option input{margin-top:.3rem}
label.check{display:inline-flex;gap:.4rem;font-weight:400}
input[type=text],input[type=password],input[type=search],select,textarea{font:inherit;padding:.45rem .6rem;border:1px solid #6e7781;border-radius:6px;width:100%;max-width:28rem;color:var(--fg);background:var(--bg)}
button,.button{font:inherit;display:inline-block;padding:.4rem .9rem;border-radius:6px;border:1px solid var(--accent);background:var(--accent);color:var(--accent-fg);cursor:pointer;text-decoration:none;margin:.15rem 0}
button.secondary,.button.secondary{background:var(--bg);color:var(--accent)}
button.danger{background:var(--danger);border-color:var(--danger);color:#fff}
button.link{background:none;border:none;color:var(--accent);padding:0;text-decoration:underline}
:focus-visible{outline:3px solid #f0a500;outline-offset:2px}
.actions{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center;margin:.75rem 0}
.status-running{color:var(--ok);font-weight:600}.status-pending{color:var(--muted);font-weight:600}
.alert{border-left:4px solid var(--danger);background:#fdecea;padding:.5rem 1rem;margin:1rem 0}
.notice{border-left:4px solid var(--accent);background:#e8f1fb;padding:.5rem 1rem;margin:1rem 0}
.token{font-family:ui-monospace,monospace;font-size:1.05rem;word-break:break-all;background:var(--panel);padding:.5rem;border:1px solid var(--line)}
progress{width:100%;max-width:28rem;height:1.25rem}
ol.log{font-family:ui-monospace,monospace;font-size:.9rem;color:var(--muted)}
.pager{display:flex;gap:1rem;align-items:center}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#a5b0bb;--bg:#0d1117;--panel:#161b22;--line:#30363d;--accent:#58a6ff;--accent-fg:#0d1117;--danger:#f47067;--ok:#56d364}.alert{background:#3b1a1a}.notice{background:#10253d}button.danger{color:#0d1117}}
`;

/** Follows the progress event stream; without JavaScript the page refreshes itself instead. */
export const progressScript = `
(function () {
  var root = document.getElementById('progress-root');
  if (!root || !window.EventSource) return;
  var bar = document.getElementById('progress-bar');
  var message = document.getElementById('progress-message');
  var log = document.getElementById('progress-log');
  var source = new EventSource(root.getAttribute('data-progress-url'));
  source.onmessage = function (event) {
    var data;
    try { data = JSON.parse(event.data); } catch (e) { return; }
    if (typeof data.progress === 'number') { bar.value = data.progress; bar.textContent = data.progress + '%'; }
    if (data.message) {
      message.textContent = data.message;
      var item = document.createElement('li');
      item.textContent = data.message;
      log.appendChild(item);
    }
    if (data.ready) { source.close(); window.location.assign(root.getAttribute('data-next-url')); }
    if (data.failed) { source.close(); root.classList.add('failed'); message.setAttribute('role', 'alert'); }
  };
})();
`;

const etagOf = (text: string) => `"${createHash('sha256').update(text).digest('base64url').slice(0, 16)}"`;
const assets: Record<string, { body: string; type: string; etag: string }> = {
  'hub.css': { body: stylesheet, type: 'text/css; charset=utf-8', etag: etagOf(stylesheet) },
  'progress.js': {
    body: progressScript,
    type: 'text/javascript; charset=utf-8',
    etag: etagOf(progressScript),
  },
};

export function serveAsset(req: IncomingMessage, res: ServerResponse, name: string): boolean {
  const asset = assets[name];
  if (!asset) return false;
  const headers = {
    ...securityHeaders(),
    'content-type': asset.type,
    etag: asset.etag,
    'cache-control': 'public, max-age=3600',
  };
  if (req.headers['if-none-match'] === asset.etag) {
    res.writeHead(304, headers);
    res.end();
    return true;
  }
  res.writeHead(200, { ...headers, 'content-length': Buffer.byteLength(asset.body) });
  res.end(req.method === 'HEAD' ? undefined : asset.body);
  return true;
}
