// Copied from ../shared/anchors/floor/udp-floor.c (the anchors shared on this
// machine) so the bench does not depend on ../shared at run time. Unchanged
// below this header.
// udp-floor.c: the syscall floor of a SIP forwarder on this machine.
// Relaying one datagram costs at least one recvfrom and one sendto. This
// times N datagrams sent through a relay socket (4 syscalls each) against N
// sent straight to the sink (2 syscalls each); the difference is the CPU
// cost of relaying one datagram, with no parsing at all.
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
static int sock(void){int s=socket(AF_INET,SOCK_DGRAM,0);struct sockaddr_in a={.sin_family=AF_INET};
 a.sin_addr.s_addr=htonl(0x7f000001);if(bind(s,(void*)&a,sizeof a)){perror("bind");exit(1);}return s;}
static double cpu(void){struct rusage r;getrusage(RUSAGE_SELF,&r);
 return (r.ru_utime.tv_sec+r.ru_stime.tv_sec)*1e6+r.ru_utime.tv_usec+r.ru_stime.tv_usec;}
int main(int c,char**v){int n=c>1?atoi(v[1]):200000,size=c>2?atoi(v[2]):500;
 int src=sock(),relay=sock(),sink=sock();struct sockaddr_in ra,ka;socklen_t l=sizeof ra;
 getsockname(relay,(void*)&ra,&l);l=sizeof ka;getsockname(sink,(void*)&ka,&l);
 char buf[2048];memset(buf,'x',sizeof buf);
 double t0=cpu();
 for(int i=0;i<n;i++){sendto(src,buf,size,0,(void*)&ka,sizeof ka);recv(sink,buf,sizeof buf,0);}
 double t1=cpu();
 for(int i=0;i<n;i++){sendto(src,buf,size,0,(void*)&ra,sizeof ra);
  struct sockaddr_in f;socklen_t fl=sizeof f;ssize_t m=recvfrom(relay,buf,sizeof buf,0,(void*)&f,&fl);
  sendto(relay,buf,m,0,(void*)&ka,sizeof ka);recv(sink,buf,sizeof buf,0);}
 double t2=cpu();
 printf("datagrams=%d size=%d relay_cpu_us_per_datagram=%.3f\n",n,size,((t2-t1)-(t1-t0))/n);return 0;}
