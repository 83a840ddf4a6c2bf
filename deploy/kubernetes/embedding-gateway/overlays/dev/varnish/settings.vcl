# What a deployment sets; default.vcl holds the logic. Included by default.vcl.
vcl 4.1;

backend default {
    .host = "embedding-gateway-backend";
    .port = "8080";
    .probe = {
        .url = "/healthz";
        .interval = 1s;
        .threshold = 3;
        .window = 3;
        .timeout = 5s;
    }
}

# Who may PURGE, on the purge listener (port 6091, which the NetworkPolicy opens to the
# broadcaster's pods only). Narrow it to your cluster's pod network.
acl purgers {
    "10.0.0.0"/8;
    "172.16.0.0"/12;
    "192.168.0.0"/16;
    "127.0.0.1";
}

sub settings_recv {
    # "shared": one cache for every API key (a hit answers any key, valid or not); anything
    # else: each key has its own cache.
    set req.http.X-Cache-Scope = "per-key";
}

sub settings_ttl {
    set beresp.ttl = 1h;
    set beresp.grace = 24h;
}
