//! The `contactcache.v1.ContactCache` gRPC service, one file per request family.
//!
//! Handlers log no request content: not contact data, not GUIDs. Each answer is counted
//! in `cache_requests_total{rpc, code}`.

mod contact;
mod put;
mod stats;

use std::sync::Arc;

use jiff::Timestamp;
use proto::v1::{
    Contact, DeleteContactRequest, DeleteContactResponse, GetContactRequest, OptOutRequest, OptOutResponse,
    PutContactRequest, PutContactResponse, PutContactResult, StatsRequest, StatsResponse,
    contact_cache_server::ContactCache,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::{memory::Protection, store::Store};

/// What the service knows of the process it runs in.
#[derive(Debug, Clone, Copy)]
pub struct Instance {
    /// Drawn at start-up; a change tells clients the cache restarted empty.
    pub epoch: u64,
    /// When this instance started.
    pub started_at: Timestamp,
    /// Memory protection in force.
    pub protection: Protection,
}

/// The gRPC service over a [`Store`].
#[derive(Debug, Clone)]
pub struct CacheService {
    store: Arc<Store>,
    instance: Instance,
}

impl CacheService {
    /// A service answering from `store`.
    pub fn new(store: Arc<Store>, instance: Instance) -> Self {
        CacheService { store, instance }
    }
}

/// Counts one answer of `rpc`.
fn observe<T>(rpc: &'static str, result: &Result<T, Status>) {
    let code = match result {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    };
    metrics::counter!("cache_requests_total", "rpc" => rpc, "code" => code_name(code)).increment(1);
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        InvalidArgument => "INVALID_ARGUMENT",
        NotFound => "NOT_FOUND",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        PermissionDenied => "PERMISSION_DENIED",
        Unauthenticated => "UNAUTHENTICATED",
        Internal => "INTERNAL",
        _ => "OTHER",
    }
}

fn timestamp(t: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.as_second(), nanos: t.subsec_nanosecond() }
}

#[tonic::async_trait]
impl ContactCache for CacheService {
    async fn put_contact(
        &self,
        request: Request<PutContactRequest>,
    ) -> Result<Response<PutContactResponse>, Status> {
        let result = put::one(&self.store, request.into_inner()).map(Response::new);
        observe("PutContact", &result);
        result
    }

    type PutContactsStream = ReceiverStream<Result<PutContactResult, Status>>;

    async fn put_contacts(
        &self,
        request: Request<Streaming<PutContactRequest>>,
    ) -> Result<Response<Self::PutContactsStream>, Status> {
        Ok(Response::new(put::stream(self.store.clone(), request.into_inner())))
    }

    async fn get_contact(&self, request: Request<GetContactRequest>) -> Result<Response<Contact>, Status> {
        let result = contact::get(&self.store, &request.into_inner().guid).map(Response::new);
        observe("GetContact", &result);
        result
    }

    async fn delete_contact(
        &self,
        request: Request<DeleteContactRequest>,
    ) -> Result<Response<DeleteContactResponse>, Status> {
        let result = contact::delete(&self.store, &request.into_inner().guid)
            .map(|()| Response::new(DeleteContactResponse {}));
        observe("DeleteContact", &result);
        result
    }

    async fn opt_out(&self, request: Request<OptOutRequest>) -> Result<Response<OptOutResponse>, Status> {
        let result = contact::opt_out(&self.store, &request.into_inner().guid)
            .map(|()| Response::new(OptOutResponse {}));
        observe("OptOut", &result);
        result
    }

    async fn stats(&self, _request: Request<StatsRequest>) -> Result<Response<StatsResponse>, Status> {
        let result = Ok(Response::new(stats::response(&self.store, &self.instance)));
        observe("Stats", &result);
        result
    }
}
