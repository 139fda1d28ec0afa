//! gRPC server reflection as a tool asks it, in either version: `grpc.reflection.v1`
//! (grpcurl) or `grpc.reflection.v1alpha` (Python's grpcio client, older grpcurl).

use std::collections::BTreeSet;

use prost::Message;
use prost_types::FileDescriptorProto;
use tonic::{Status, transport::Channel};

/// A version of the reflection protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `grpc.reflection.v1`.
    V1,
    /// `grpc.reflection.v1alpha`.
    V1Alpha,
}

impl Version {
    /// Both versions.
    pub const ALL: [Version; 2] = [Version::V1, Version::V1Alpha];
}

/// What one reflection request is answered with.
enum Answer {
    Services(Vec<String>),
    Files(Vec<Vec<u8>>),
    Other,
}

/// The services the server on `channel` lists over reflection `version`.
pub async fn list_services(channel: Channel, version: Version) -> Result<BTreeSet<String>, Status> {
    match ask(channel, version, Ask::ListServices).await? {
        Answer::Services(names) => Ok(names.into_iter().collect()),
        _ => Err(Status::internal("list_services: an answer of another kind")),
    }
}

/// The files (name, and the services each declares) that `file_containing_symbol(symbol)`
/// is answered with over reflection `version`.
pub async fn file_containing_symbol(
    channel: Channel,
    version: Version,
    symbol: &str,
) -> Result<Vec<(String, Vec<String>)>, Status> {
    match ask(channel, version, Ask::FileContainingSymbol(symbol.to_string())).await? {
        Answer::Files(files) => files
            .iter()
            .map(|bytes| {
                let file = FileDescriptorProto::decode(&bytes[..])
                    .map_err(|e| Status::internal(format!("a file descriptor that does not decode: {e}")))?;
                let services = file.service.iter().map(|s| s.name().to_string()).collect();
                Ok((file.name().to_string(), services))
            })
            .collect(),
        _ => Err(Status::internal("file_containing_symbol: an answer of another kind")),
    }
}

enum Ask {
    ListServices,
    FileContainingSymbol(String),
}

/// Sends one request on a reflection stream of `version` and reads its one answer.
async fn ask(channel: Channel, version: Version, ask: Ask) -> Result<Answer, Status> {
    // The two versions' messages are the same, in two generated packages.
    macro_rules! ask_in {
        ($pb:path) => {{
            use pb::{
                ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
                server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
            };
            use $pb as pb;
            let message_request = match ask {
                Ask::ListServices => MessageRequest::ListServices(String::new()),
                Ask::FileContainingSymbol(symbol) => MessageRequest::FileContainingSymbol(symbol),
            };
            let request =
                ServerReflectionRequest { host: String::new(), message_request: Some(message_request) };
            let mut client = ServerReflectionClient::new(channel);
            let mut answers =
                client.server_reflection_info(tokio_stream::iter([request])).await?.into_inner();
            let answer = answers.message().await?.ok_or_else(|| Status::internal("no answer"))?;
            Ok(match answer.message_response {
                Some(MessageResponse::ListServicesResponse(list)) => {
                    Answer::Services(list.service.into_iter().map(|s| s.name).collect())
                }
                Some(MessageResponse::FileDescriptorResponse(files)) => {
                    Answer::Files(files.file_descriptor_proto)
                }
                Some(MessageResponse::ErrorResponse(error)) => {
                    return Err(Status::new(error.error_code.into(), error.error_message));
                }
                _ => Answer::Other,
            })
        }};
    }
    match version {
        Version::V1 => ask_in!(tonic_reflection::pb::v1),
        Version::V1Alpha => ask_in!(tonic_reflection::pb::v1alpha),
    }
}
