"""The control stage: the via.v1.Control gRPC API that reads and steers a running via-otlp.

- `ControlServer` (server.py): the grpc.aio server, reflection and the bearer-token check;
- `convert.py`: pure translation between via.v1 messages and VIA's dataclasses, and paging;
- `cli.py`: `via-otlp ctl ...`, the command-line client;
- `codegen.py`: regenerates `gen/` from `protos/via/v1/control.proto`.
"""
