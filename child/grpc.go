package child

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
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream, and with it the receiving goroutine
	stream, err := c.client.Execute(ctx, preq)
	if err != nil {
		return fmt.Errorf("execute run %s: %w", req.RunID, err)
	}
	// The child sends a batch as soon as it has events, and emit (a store
	// write) is slower than the child: batches received while emit runs are
	// handed to the next emit together, so a slow store gets fewer writes,
	// not a backlog. A bounded channel keeps gRPC's flow control in charge.
	received := make(chan *pb.EventBatch, 16)
	var recvErr error // set before received is closed
	go func() {
		defer close(received)
		for {
			batch, err := stream.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					recvErr = fmt.Errorf("event stream of run %s: %w", req.RunID, err)
				}
				return
			}
			select {
			case received <- batch:
			case <-ctx.Done():
				return
			}
		}
	}()
	var events []runnerd.Event
	add := func(b *pb.EventBatch) {
		for _, e := range b.GetEvents() {
			events = append(events, eventFromPB(e))
		}
	}
	for batch := range received {
		events = events[:0]
		add(batch)
	queued:
		for len(events) < MaxBatch {
			select {
			case b, ok := <-received:
				if !ok {
					break queued
				}
				add(b)
			default:
				break queued
			}
		}
		if err := emit(events); err != nil {
			// End the stream and wait for the receiver: it closes received
			// when it returns.
			cancel()
			for range received {
			}
			return err
		}
	}
	return recvErr
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
