# The release settings of the Lambda builds, sourced by scripts/build-lambda.sh; source it before
# `sam build` too, so that what is deployed is what was measured:
#
#   source scripts/lambda-profile.sh && sam build --beta-features
#
# A Lambda bootstrap is paid for in zip size and cold start, not in peak throughput (its stage
# waits on DynamoDB and SQS): one codegen unit, whole-program LTO and size-optimised code make
# it about a third smaller. The embedded binary keeps the workspace's release profile.
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
export CARGO_PROFILE_RELEASE_LTO=fat
export CARGO_PROFILE_RELEASE_OPT_LEVEL=s
# Never abort on panic (cargo-lambda's default): see [profile.release] in Cargo.toml.
export CARGO_PROFILE_RELEASE_PANIC=unwind
