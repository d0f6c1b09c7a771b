"""Lists a gRPC server's services through server reflection, with Python's
grpcio-reflection (a client that is not Eddy's), once per protocol version.

Usage: reflection.py HOST:PORT
Prints one JSON object: {"v1alpha": [...services], "v1": [...services],
"pipelines_file": name of the file defining eddy.v1.Pipelines}.

grpcio-reflection ships only v1alpha stubs; v1 has the same messages under
another package, so it is called by method path with the same classes.
"""
import json
import sys

import grpc
from grpc_reflection.v1alpha import reflection_pb2 as pb

METHODS = {
    "v1alpha": "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    "v1": "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
}


def ask(channel, method, request):
    call = channel.stream_stream(
        method,
        request_serializer=pb.ServerReflectionRequest.SerializeToString,
        response_deserializer=pb.ServerReflectionResponse.FromString,
    )
    return next(iter(call(iter([request]), timeout=10)))


def main():
    channel = grpc.insecure_channel(sys.argv[1])
    out = {}
    for version, method in METHODS.items():
        response = ask(channel, method, pb.ServerReflectionRequest(list_services=""))
        out[version] = sorted(s.name for s in response.list_services_response.service)
    response = ask(
        channel,
        METHODS["v1alpha"],
        pb.ServerReflectionRequest(file_containing_symbol="eddy.v1.Pipelines"),
    )
    from google.protobuf import descriptor_pb2

    files = response.file_descriptor_response.file_descriptor_proto
    out["pipelines_file"] = descriptor_pb2.FileDescriptorProto.FromString(files[0]).name
    print(json.dumps(out))


if __name__ == "__main__":
    main()
