"""Generated from proto/ by `python -m service.rpc.codegen`; do not edit."""
