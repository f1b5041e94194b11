package proto

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/runnerd/runnerd"
	pb "github.com/runnerd/runnerd/proto/runexec/v1"
)

// executorPlugin tells go-plugin how to serve and dial the Executor service.
type executorPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impl Executor // set in the child only
}

func (p *executorPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterExecutorServer(s, &grpcServer{impl: p.impl})
	return nil
}

func (p *executorPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &grpcClient{client: pb.NewExecutorClient(c), conn: c}, nil
}

// grpcClient is the supervisor's side: it turns the stream into emit calls.
type grpcClient struct {
	client pb.ExecutorClient
	conn   *grpc.ClientConn
}

func (c *grpcClient) Execute(ctx context.Context, req *Request, emit func([]runnerd.Event) error) error {
	preq, err := requestToPB(req)
	if err != nil {
		return err
	}
	stream, err := c.client.Execute(ctx, preq)
	if err != nil {
		return fmt.Errorf("execute run %s: %w", req.RunID, err)
	}
	var events []runnerd.Event
	for {
		batch, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("event stream of run %s: %w", req.RunID, err)
		}
		events = events[:0]
		for _, e := range batch.GetEvents() {
			events = append(events, eventFromPB(e))
		}
		if err := emit(events); err != nil {
			return err
		}
	}
}

func (c *grpcClient) Cancel(ctx context.Context, reason string) error {
	_, err := c.client.Cancel(ctx, &pb.CancelRequest{Reason: reason})
	return err
}

// grpcServer is the child's side: it runs impl and streams its batches.
type grpcServer struct {
	pb.UnimplementedExecutorServer
	impl Executor
}

func (s *grpcServer) Execute(preq *pb.ExecuteRequest, stream grpc.ServerStreamingServer[pb.EventBatch]) error {
	req, err := requestFromPB(preq)
	if err != nil {
		return err
	}
	batch := &pb.EventBatch{}
	return s.impl.Execute(stream.Context(), req, func(events []runnerd.Event) error {
		batch.Events = batch.Events[:0]
		for i := range events {
			batch.Events = append(batch.Events, eventToPB(&events[i]))
		}
		return stream.Send(batch)
	})
}

func (s *grpcServer) Cancel(ctx context.Context, req *pb.CancelRequest) (*pb.CancelResponse, error) {
	return &pb.CancelResponse{}, s.impl.Cancel(ctx, req.GetReason())
}
