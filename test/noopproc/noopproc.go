// Package noopproc is the baseline ext_proc server for measurements: it
// answers every message with an empty reply of the matching kind and does
// nothing else, so that arl's cost can be measured as the difference against
// it in one run on one machine.
//
// This package may import Envoy's ext_proc protos only.
package noopproc

import (
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// Server is the no-op ExternalProcessor.
type Server struct {
	extprocv3.UnimplementedExternalProcessorServer
}

var _ extprocv3.ExternalProcessorServer = Server{}

var (
	requestHeaders  = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}}}
	requestBody     = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{}}}
	responseHeaders = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}}}
	responseBody    = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}}}
	trailers        = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}
	reqTrailers     = &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}
)

// Process acknowledges every message until the stream ends.
func (Server) Process(s extprocv3.ExternalProcessor_ProcessServer) error {
	for {
		req, err := s.Recv()
		if err != nil {
			return nil
		}
		var resp *extprocv3.ProcessingResponse
		switch req.Request.(type) {
		case *extprocv3.ProcessingRequest_RequestHeaders:
			resp = requestHeaders
		case *extprocv3.ProcessingRequest_RequestBody:
			resp = requestBody
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			resp = responseHeaders
		case *extprocv3.ProcessingRequest_ResponseBody:
			resp = responseBody
		case *extprocv3.ProcessingRequest_RequestTrailers:
			resp = reqTrailers
		case *extprocv3.ProcessingRequest_ResponseTrailers:
			resp = trailers
		default:
			continue
		}
		if err := s.Send(resp); err != nil {
			return nil
		}
	}
}
