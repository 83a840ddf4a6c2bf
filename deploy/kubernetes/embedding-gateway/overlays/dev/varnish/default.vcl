# The edge cache of the embedding gateway (seed 004): POST /v1/embeddings cached by the body's
# SHA-256 (x-body-hash, set by the ext_proc hasher in front), 1 h TTL and 24 h grace (stale
# answers while the gateway is down or being asked again), and purges from the broadcaster only.
#
# What differs from the original's default.vcl, each a defect a user would hit:
# - Authorization does not bypass the cache (OpenAI SDKs always send one): the credentials
#   (Authorization, api-key, OpenAI-Organization, OpenAI-Project) are part of the cache key
#   unless settings.vcl shares the cache across keys.
# - PURGE <url> removes that URL's answers (a ban on the URL; the original purged the hash of
#   "PURGE" + url, which nothing is stored under).
# - X-Purge-All clears everything only for "true" or "1" ("false" and "0" are ignored).
# - Only 200 answers are cached (a 404 "model not found" was kept for an hour).
# - PURGE is served only on the purge listener and only to the `purgers` ACL.
# - A body over 1 MB (or of unknown length) is passed through, not reset.
# - Ban expressions are built from checked values only (no injection through Surrogate-Key;
#   std.ban() splits its argument on whitespace and takes no quotes, so none may appear).
#
# Deployment-specific values (backend, ACL, cache scope, TTL) live in settings.vcl, so this file
# is the one the tests run as it is.
vcl 4.1;

import std;

include "settings.vcl";

sub vcl_recv {
    # Internal headers are ours to set; a client's copies are dropped.
    unset req.http.X-Original-Method;
    unset req.http.X-Cache-Scope;
    call settings_recv;

    if (local.socket == "purge") {
        if (req.method != "PURGE") {
            return (synth(405, "Only PURGE on this listener"));
        }
        if (!(client.ip ~ purgers)) {
            return (synth(403, "PURGE is not allowed from this address"));
        }
        call purge_recv;
    }
    if (req.method == "PURGE") {
        return (synth(405, "PURGE is served on the purge listener only"));
    }

    # The original's bypass for the probes and metrics.
    if (req.method == "GET" && req.url ~ "^/(healthz|readyz|metrics)(\?|$)") {
        return (pass);
    }

    # built-in: vcl_req_host
    if (req.http.host ~ "[[:upper:]]") {
        set req.http.host = req.http.host.lower();
    }
    if (!req.http.host && req.esi_level == 0 && req.proto == "HTTP/1.1") {
        return (synth(400));
    }
    # built-in: vcl_req_method
    if (req.method == "PRI") {
        return (synth(405));
    }
    if (req.method != "GET" && req.method != "HEAD" && req.method != "PUT" &&
        req.method != "POST" && req.method != "TRACE" && req.method != "OPTIONS" &&
        req.method != "DELETE" && req.method != "PATCH") {
        # Not piped, as the built-in VCL does: a piped connection carries every later request
        # on it to the gateway unseen by this VCL. Nothing this API serves needs another method.
        return (synth(405, "Method not allowed"));
    }
    # built-in: vcl_req_cookie (no Authorization bypass: see vcl_hash)
    if (req.http.Cookie) {
        return (pass);
    }

    if (req.method == "POST") {
        # Only the hasher's form of a hash; anything else is not a cache key.
        if (req.http.X-Body-Hash !~ "^[0-9a-f]{64}$") {
            unset req.http.X-Body-Hash;
            return (pass);
        }
        # The body must be read into memory to be sent on a miss. Past 1 MB, or without a
        # length, it is streamed to the gateway instead: cache_req_body() failing half-way
        # through a body is what reset the original's connections.
        if (req.http.Content-Length !~ "^[0-9]{1,7}$" ||
            std.integer(req.http.Content-Length, 1048577) > 1048576) {
            unset req.http.X-Body-Hash;
            return (pass);
        }
        if (!std.cache_req_body(1MB)) {
            unset req.http.X-Body-Hash;
            return (pass);
        }
        set req.http.X-Original-Method = "POST";
        return (hash);
    }
    unset req.http.X-Body-Hash;
    if (req.method != "GET" && req.method != "HEAD") {
        return (pass);
    }
    return (hash);
}

# PURGE forms, each answered 200 when the ban is in place. Bans, not purges: one PURGE <url>
# must reach every body and every API key stored for that URL.
sub purge_recv {
    if (req.http.X-Purge-All) {
        if (req.http.X-Purge-All ~ "^(?i)(true|1)$") {
            if (std.ban("obj.status != 0")) {
                return (synth(200, "All cache banned"));
            }
            return (synth(500, std.ban_error()));
        }
        if (req.http.X-Purge-All !~ "^(?i)(false|0)$") {
            return (synth(400, "X-Purge-All must be true, 1, false or 0"));
        }
    }
    if (req.http.Surrogate-Key) {
        # Space-separated keys; each matches whole keys of an object, never a part of one.
        if (req.http.Surrogate-Key !~ "^ *[A-Za-z0-9_:-]+( +[A-Za-z0-9_:-]+)* *$") {
            return (synth(400, "Surrogate-Key: keys are letters, digits, _ : - separated by spaces"));
        }
        if (std.ban("obj.http.x-surrogate-key ~ (^|\s)(" +
                regsuball(regsub(req.http.Surrogate-Key, "^ *(.*[^ ]) *$", "\1"), " +", "|") +
                ")(\s|$)")) {
            return (synth(200, "Surrogate-Key banned"));
        }
        return (synth(500, std.ban_error()));
    }
    if (req.url !~ {"^/[^\s"\\]*$"}) {
        return (synth(400, "PURGE needs a path"));
    }
    if (std.ban("obj.http.x-url == " + req.url)) {
        return (synth(200, "Purged"));
    }
    return (synth(500, std.ban_error()));
}

sub vcl_hash {
    hash_data(req.url);
    # The Host the client asked for (Envoy keeps it in X-Original-Host when it rewrites Host).
    if (req.http.X-Original-Host) {
        hash_data(req.http.X-Original-Host);
    } else if (req.http.host) {
        hash_data(req.http.host);
    } else {
        hash_data(server.ip);
    }
    if (req.http.X-Original-Method == "POST") {
        hash_data("POST");
        hash_data(req.http.X-Body-Hash);
    }
    # One cache per caller's credentials unless the operator shares it (settings.vcl): every
    # header the upstream takes as one (OpenAI's Authorization, organization and project, Azure
    # OpenAI's api-key), as the gateway's coalescing keys them. They enter the object's SHA-256
    # lookup hash only, never a stored header. (Varnish separates hash_data pieces: a request
    # cannot move text from one piece into the next to reach another's object; tested.)
    if (req.http.X-Cache-Scope != "shared") {
        hash_data("authorization");
        if (req.http.Authorization) {
            hash_data(req.http.Authorization);
        }
        hash_data("api-key");
        if (req.http.api-key) {
            hash_data(req.http.api-key);
        }
        hash_data("openai-organization");
        if (req.http.OpenAI-Organization) {
            hash_data(req.http.OpenAI-Organization);
        }
        hash_data("openai-project");
        if (req.http.OpenAI-Project) {
            hash_data(req.http.OpenAI-Project);
        }
    }
    return (lookup);
}

sub vcl_backend_fetch {
    if (bereq.http.X-Original-Host) {
        set bereq.http.Host = regsub(bereq.http.X-Original-Host, ":80$", "");
    }
    # A lookup turns the backend request into a GET; the cached body goes with the POST.
    if (bereq.http.X-Original-Method) {
        set bereq.method = bereq.http.X-Original-Method;
    }
    unset bereq.http.X-Original-Method;
    unset bereq.http.X-Cache-Scope;
}

sub vcl_backend_response {
    # built-in: vcl_beresp_range
    if (beresp.status != 206 && beresp.status != 416) {
        unset beresp.http.Content-Range;
    }
    # Revalidating a stale answer failed: keep serving the stale one (grace).
    if (bereq.is_bgfetch && beresp.status != 200) {
        return (abandon);
    }
    if (bereq.uncacheable) {
        return (deliver);
    }
    # Only answers are cached, never errors ("model not found", rate limits, outages).
    if (beresp.status != 200) {
        set beresp.ttl = 0s;
        set beresp.uncacheable = true;
        return (deliver);
    }
    # built-in: vcl_beresp_cookie, vcl_beresp_control, vcl_beresp_vary
    if (beresp.http.Set-Cookie ||
        beresp.http.Surrogate-Control ~ "(?i)no-store" ||
        (!beresp.http.Surrogate-Control && beresp.http.Cache-Control ~ "(?i)(private|no-cache|no-store)") ||
        beresp.http.Vary == "*") {
        set beresp.ttl = 120s;
        set beresp.uncacheable = true;
        return (deliver);
    }
    # What the PURGE forms match on: the URL, the backend's Surrogate-Key and the body hash.
    set beresp.http.x-url = bereq.url;
    set beresp.http.x-surrogate-key = " " + beresp.http.Surrogate-Key + " " + bereq.http.X-Body-Hash + " ";
    # Varnish stores gzip and unzips for clients that do not take it: one object, not one per
    # Accept-Encoding.
    if (!beresp.http.Content-Encoding && beresp.http.Content-Type ~ "^application/json") {
        set beresp.do_gzip = true;
    }
    if (beresp.http.Vary ~ "^(?i)accept-encoding$") {
        unset beresp.http.Vary;
    }
    call settings_ttl;
    return (deliver);
}

sub vcl_backend_error {
    if (bereq.is_bgfetch) {
        return (abandon);
    }
}

sub vcl_deliver {
    unset resp.http.Surrogate-Key;
    unset resp.http.x-surrogate-key;
    unset resp.http.x-url;
    # obj.uncacheable is true for hit-for-pass and hit-for-miss too, not only pass.
    if (obj.uncacheable) {
        set resp.http.X-Cache = "PASS";
    } else if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
}

sub vcl_synth {
    set resp.http.Content-Type = "text/plain; charset=utf-8";
    set resp.body = resp.reason + {"
"};
    return (deliver);
}
