# A trace collector for the tracing test: Python's grpcio serving OTLP's TraceService/Export on
# one port and OTLP/HTTP protobuf (POST /v1/traces) on another, decoding with classes that
# grpc_tools.protoc generates from trace.proto. Prints the ports, then one JSON line per span.
import json, os, sys, tempfile, threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from grpc_tools import protoc

here = os.path.dirname(os.path.abspath(__file__))
out = tempfile.mkdtemp(prefix="otlp-")
if protoc.main(["protoc", f"-I{here}", f"--python_out={out}", f"--grpc_python_out={out}", os.path.join(here, "trace.proto")]) != 0:
    sys.exit("protoc failed")
sys.path.insert(0, out)
import trace_pb2, trace_pb2_grpc  # noqa: E402

lock = threading.Lock()

def value(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None

def report(request, via):
    for resource in request.resource_spans:
        service = {kv.key: value(kv.value) for kv in resource.resource.attributes}.get("service.name")
        for scope in resource.scope_spans:
            for span in scope.spans:
                line = json.dumps({
                    "via": via, "service": service, "scope": scope.scope.name,
                    "traceId": span.trace_id.hex(), "spanId": span.span_id.hex(),
                    "parentSpanId": span.parent_span_id.hex(), "name": span.name, "kind": span.kind,
                    "start": str(span.start_time_unix_nano), "end": str(span.end_time_unix_nano),
                    "attributes": {kv.key: value(kv.value) for kv in span.attributes},
                    "status": {"code": span.status.code, "message": span.status.message},
                })
                with lock:
                    print(line, flush=True)

class TraceService(trace_pb2_grpc.TraceServiceServicer):
    def Export(self, request, context):
        report(request, "grpc")
        return trace_pb2.ExportTraceServiceResponse()

class Http(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        if self.path != "/v1/traces" or self.headers["content-type"] != "application/x-protobuf":
            self.send_response(415); self.end_headers(); return
        report(trace_pb2.ExportTraceServiceRequest.FromString(body), "http/protobuf")
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
trace_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(), server)
grpc_port = server.add_insecure_port("127.0.0.1:0")
server.start()
http = ThreadingHTTPServer(("127.0.0.1", 0), Http)
threading.Thread(target=http.serve_forever, daemon=True).start()
print(json.dumps({"grpc": grpc_port, "http": http.server_address[1]}), flush=True)
sys.stdin.read()  # runs until the test closes stdin (or is gone)
